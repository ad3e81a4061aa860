"""``scalesweep plot`` (cli.figures) and ``scalesweep export``, ``list``, ``edit``, ``delete``
against an in-process app: valid PNG/SVG/PDF files, log axes, legends naming the groups,
exports with every run."""

from __future__ import annotations

import argparse
import csv
import io
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from factories import all_runs, result, spectrum, tail_fit

from cli import figures
from cli.main import main
from cli.plot_commands import draw
from service.client import Client
from service.spec import SweepSpec
from service.storage import Store

LINKED = {
    "name": "path",
    "model": "diagonal",
    "teacher": {"gamma": 1.5, "noise": 0.0},
    "grid": {"d": [50], "n": [25, 50, 100, 200], "seed": [0, 1, 2]},
    "link": {"weight_decay": {"coef": 0.1, "of": "n", "power": [-0.5, -1.0]}},
}
SPECTRUM = spectrum([k**-1.5 for k in range(1, 41)], tail=tail_fit(alpha=1.67), rank_exponent=1.5)


def _sweep(store: Store, body: dict[str, object]) -> int:
    sweep = store.create_sweep(SweepSpec.model_validate(body), max_runs=1000)
    out = []
    for r in all_runs(store, sweep.id):
        risk = (1.0 + 0.05 * (r.config.seed - 1)) * r.config.n ** (
            -0.5 + (r.config.link_power or 0)
        )
        out.append((r.id, result(r.config_hash, risk, spectra=[SPECTRUM])))
    store.record_results(out)
    return sweep.id


def _args(sweep_id: int, kind: str, **kw: object) -> argparse.Namespace:
    base: dict[str, object] = {"id": sweep_id, "kind": kind, "x": "n", "by": None, "ids": None,
                               "run_id": None}  # fmt: skip
    return argparse.Namespace(**{**base, **kw})


def test_every_kind_draws_log_axes_and_a_legend_naming_the_groups(
    app_client: Client, store: Store
) -> None:
    sid = _sweep(store, LINKED)
    other = _sweep(store, {**LINKED, "name": "other", "link": None,
                           "grid": {**LINKED["grid"], "weight_decay": [0.01]}})  # type: ignore[dict-item]  # fmt: skip
    for kind, extra in (("risk", {}), ("theory", {}), ("compare", {"ids": str(other)})):
        fig = draw(app_client, _args(sid, kind, **extra))
        ax = fig.axes[0]
        assert (ax.get_xscale(), ax.get_yscale()) == ("log", "log"), kind
        legend = ax.get_legend()
        assert legend is not None, kind
        texts = " | ".join(t.get_text() for t in legend.get_texts())
        # the display names: link power -0.5 is l = 0.5 (lambda ~ n^-l)
        assert "$l$ = 0.5" in texts and "$l$ = 1" in texts, (kind, texts)
        assert "link_power" not in texts, (kind, texts)
    phase = draw(app_client, _args(sid, "phase"))
    assert {t.get_text() for t in phase.axes[0].get_legend().get_texts()} == {
        "measured (95% interval)",
        "state evolution",
        "heuristic (asymptotic)",
    }
    first = next(iter(app_client.list_runs(sid)))
    assert app_client.get_spectra(first.id) == [SPECTRUM]  # served fields stripped
    spec = draw(app_client, _args(sid, "spectrum"))
    hist, rank = spec.axes
    assert hist.get_xscale() == "log" and (rank.get_xscale(), rank.get_yscale()) == ("log", "log")
    assert any("tail fit" in t.get_text() for t in rank.get_legend().get_texts())


@pytest.mark.parametrize("suffix", [".png", ".svg", ".pdf"])
def test_plot_writes_a_valid_file(
    app_client: Client, store: Store, tmp_path: Path, suffix: str,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    sid = _sweep(store, LINKED)
    out = tmp_path / f"risk{suffix}"
    assert main(["plot", str(sid), "--kind", "risk", "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    data = out.read_bytes()
    if suffix == ".png":
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
    elif suffix == ".pdf":
        assert data[:5] == b"%PDF-" and b"%%EOF" in data[-64:]
    else:
        root = ET.fromstring(data)
        assert root.tag.endswith("svg")
        assert b"= 0.5" in data and b"link_power" not in data  # svg.fonttype none: text


def test_plot_refuses_a_bad_suffix_and_a_missing_spectrum(
    app_client: Client, store: Store, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sid = _sweep(store, LINKED)
    assert main(["plot", str(sid), "--out", str(tmp_path / "x.jpg")]) == 2
    assert ".png, .svg or .pdf" in capsys.readouterr().err
    empty = store.create_sweep(SweepSpec.model_validate({**LINKED, "name": "empty",
                               "grid": {**LINKED["grid"], "seed": [7]}}), max_runs=100)  # type: ignore[dict-item]  # fmt: skip
    assert (
        main(["plot", str(empty.id), "--kind", "spectrum", "--out", str(tmp_path / "s.png")]) == 2
    )
    assert "no succeeded run" in capsys.readouterr().err
    assert main(["plot", str(sid), "--kind", "compare", "--out", str(tmp_path / "c.png")]) == 2
    assert not (tmp_path / "c.png").exists()


def test_export_list_edit_delete(
    app_client: Client, store: Store, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sid = _sweep(store, LINKED)
    out = tmp_path / "runs.csv"
    assert main(["export", str(sid), "--format", "csv", "--out", str(out)]) == 0
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert len(rows) == 24 and {"run_id", "excess_risk", "link_power"} <= set(rows[0])
    assert not list(tmp_path.glob("*.part"))
    capsys.readouterr()
    assert main(["edit", str(sid), "--name", "renamed", "--tags", "paper,d50", "--archive"]) == 0
    assert "tags d50, paper  archived" in capsys.readouterr().out
    assert main(["list"]) == 0
    assert "renamed" not in capsys.readouterr().out  # archived: hidden
    assert main(["list", "--tag", "paper", "--archived", "all"]) == 0
    listing = capsys.readouterr().out
    assert "renamed" in listing and "1 sweeps" in listing
    assert main(["edit", str(sid)]) == 2
    assert main(["delete", str(sid)]) == 2  # without --yes nothing changes
    assert app_client.get_sweep(sid).name == "renamed"
    assert main(["delete", str(sid), "--yes"]) == 0
    assert "deleted sweep" in capsys.readouterr().out and main(["status", str(sid)]) == 1


def test_figures_save_refuses_unknown_formats(tmp_path: Path) -> None:
    from matplotlib.figure import Figure

    with pytest.raises(ValueError, match="must end in"):
        figures.save(Figure(), tmp_path / "f.gif")
