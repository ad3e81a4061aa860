"""The sweep spec's width axis (service.spec): grid.width and grid.width_ratio, their
validation (errors name the field) and expansion (width right after n, training.width set,
repeats after rounding dropped, n_runs equal to the expansion)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from service.spec import MAX_WIDTH, RunConfig, SweepSpec, expand, widths


def quadratic(training: dict[str, Any] | None = None, **grid: Any) -> dict[str, Any]:
    """A small quadratic sweep body: d = [10], n = [50], weight_decay = [0.1], seeds 0, 1."""
    body: dict[str, Any] = {
        "model": "quadratic",
        "grid": {"d": [10], "n": [50], "weight_decay": [0.1], "seed": [0, 1], **grid},
    }
    if training is not None:
        body["training"] = training
    return body


def runs(body: dict[str, Any]) -> tuple[SweepSpec, list[RunConfig]]:
    spec = SweepSpec.model_validate(body)
    cfgs = list(expand(spec))
    assert spec.n_runs() == len(cfgs)  # the count without expanding is the expansion's
    assert len({c.config_hash() for c in cfgs}) == len(cfgs)
    return spec, cfgs


def test_a_width_list_sets_each_runs_training_width_right_after_n() -> None:
    _, cfgs = runs(quadratic(n=[50, 100], width=[2, 10, 40], weight_decay=[0.1, 0.01]))
    assert len(cfgs) == 2 * 3 * 2 * 2
    order = [(c.n, c.training.width, c.weight_decay, c.seed) for c in cfgs]
    rank = ([50, 100].index, [2, 10, 40].index, [0.1, 0.01].index, int)
    assert order == sorted(order, key=lambda t: tuple(f(v) for f, v in zip(rank, t, strict=True)))
    assert [c.width for c in cfgs[:4]] == [2, 2, 2, 2]
    assert {c.width for c in cfgs} == {2, 10, 40}  # 40 > d: allowed (the convex problem)


def test_a_width_range_is_rounded_and_repeats_after_rounding_are_one_run() -> None:
    spec, cfgs = runs(quadratic(width={"geomspace": [1, 20], "num": 9}, seed=[0]))
    assert widths(spec, 10) == [1, 2, 3, 4, 7, 9, 14, 20]  # 1.45 and 2.1 both round to 2
    assert [c.training.width for c in cfgs] == [1, 2, 3, 4, 7, 9, 14, 20]
    _, lin = runs(quadratic(width={"linspace": [1, 2], "num": 5}, seed=[0]))
    assert [c.width for c in lin] == [1, 2]  # 1, 1.25, 1.5 -> 2 (half to even), 1.75, 2


def test_a_width_ratio_gives_widths_per_d_deduplicated() -> None:
    spec, cfgs = runs(quadratic(d=[4, 20], width_ratio=[0.05, 0.1, 0.5, 1, 2], seed=[0]))
    assert widths(spec, 4) == [1, 2, 4, 8]  # 0.2 and 0.4 -> max(1, 0) and 0 -> 1: one run
    assert widths(spec, 20) == [1, 2, 10, 20, 40]
    expected = [(4, 1), (4, 2), (4, 4), (4, 8), (20, 1), (20, 2), (20, 10), (20, 20), (20, 40)]
    assert [(c.d, c.width) for c in cfgs] == expected


def test_without_a_width_axis_runs_keep_the_default_width() -> None:
    _, cfgs = runs(quadratic())
    assert all(c.training.width is None and c.width == 10 for c in cfgs)
    _, signed = runs(quadratic(training={"second_layer": "signed"}))
    assert {c.width for c in signed} == {20}  # a signed second layer: 2d, every neuron counted
    _, given = runs(quadratic(training={"width": 3}))
    assert {c.width for c in given} == {3}


def _error(body: dict[str, Any]) -> str:
    """Every error of a refused body: location and message, as the API's 422 lists them."""
    with pytest.raises(ValidationError) as info:
        SweepSpec.model_validate(body)
    return " | ".join(".".join(map(str, e["loc"])) + " " + e["msg"] for e in info.value.errors())


BAD = [
    ("zero", quadratic(width=[0, 4]), "grid.width"),
    ("negative", quadratic(width=[-3]), "grid.width"),
    ("above the bound", quadratic(width=[10**7]), "grid.width"),
    ("fraction", quadratic(width=[10.5]), "grid.width"),
    ("repeated", quadratic(width=[4, 4]), "grid.width"),
    ("range below 1", quadratic(width={"linspace": [-2, 8], "num": 3}), "grid.width"),
    ("range above", quadratic(width={"geomspace": [1, 1e7], "num": 3}), "grid.width"),
    ("ratio zero", quadratic(width_ratio=[0.0]), "grid.width_ratio"),
    ("ratio too wide", quadratic(d=[10, 1000], width_ratio=[2000.0]), "grid.width_ratio"),
    ("both axes", quadratic(width=[2], width_ratio=[0.5]), "grid.width_ratio"),
    ("width and training.width", quadratic({"width": 4}, width=[2]), "training.width"),
    ("ratio and training.width", quadratic({"width": 4}, width_ratio=[1]), "grid.width_ratio"),
    ("training.width 0", quadratic(training={"width": 0}), "training.width"),
    ("training.width too wide", quadratic(training={"width": 10**7}), "training.width"),
]


@pytest.mark.parametrize(("case", "body", "field"), BAD, ids=[c[0] for c in BAD])
def test_bad_widths_are_refused_naming_the_field(
    case: str, body: dict[str, Any], field: str
) -> None:
    assert field in _error(body), case


def test_a_diagonal_sweep_has_no_width_axis() -> None:
    for axis, values in (("width", [2, 4]), ("width_ratio", [0.5])):
        body = {
            "model": "diagonal",
            "grid": {"d": [10], "n": [20], "weight_decay": [0.1], axis: values},
        }
        text = _error(body)
        assert f"grid.{axis}" in text and "quadratic model only" in text, text


def test_the_bounds_are_inclusive() -> None:
    _, cfgs = runs(quadratic(width=[1, MAX_WIDTH], seed=[0]))
    assert [c.width for c in cfgs] == [1, MAX_WIDTH]
    _, ratio = runs(quadratic(d=[10], width_ratio=[MAX_WIDTH / 10], seed=[0]))
    assert [c.width for c in ratio] == [MAX_WIDTH]
