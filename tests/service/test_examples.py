"""The example files (examples/*.yaml): valid, every scale present, sizes as promised."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.errors import SpecError
from service.examples import EXAMPLES_DIR, Example, all_examples, find_example, load_example

EXAMPLES = all_examples()
PHENOMENA = {
    "diagonal-bias-paths", "diagonal-noisy-optimal", "plateau-crossover", "interpolation-peak",
    "noise-floor", "quadratic-neff", "spectra-tails", "spectra-quadratic",
}  # fmt: skip


def test_every_phenomenon_of_the_paper_has_an_example() -> None:
    assert PHENOMENA <= {e.name for e in EXAMPLES}
    assert (
        len({e.name for e in EXAMPLES}) == len(EXAMPLES) == len(list(EXAMPLES_DIR.glob("*.yaml")))
    )


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda e: e.name)
def test_scales_are_sized_as_promised(example: Example) -> None:
    tiny, small, paper = (example.runs(s) for s in ("tiny", "small", "paper"))
    assert tiny <= 16 and tiny < small <= 200 and paper > small
    for spec in [*example.scales["tiny"], *example.scales["small"], *example.scales["paper"]]:
        assert spec.model == example.model
    ds = [
        d
        for s in example.scales["paper"]
        for d in (s.grid.d if isinstance(s.grid.d, list) else s.grid.d.values())
    ]
    if example.model == "quadratic":
        assert min(ds) >= 100 and max(ds) >= 400  # the paper's d = 100-800
    else:
        assert max(ds) >= 1000  # diagonal d in the thousands
    if example.minutes_small is not None:
        assert example.minutes_small <= 10  # 2 CPU cores, at most 10 minutes


def test_a_bad_example_file_names_the_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: Bad Name\nphenomenon: x\nmodel: diagonal\nverdict: {kind: phase}\n"
                   "scales: {}\n")  # fmt: skip
    with pytest.raises(SpecError) as info:
        load_example(bad)
    assert info.value.field in ("name", "scales")
    with pytest.raises(SpecError, match="known: "):
        find_example("no-such-example")
