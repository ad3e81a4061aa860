"""The client commands (submit, runs, status, cancel, exponents) against an in-process app."""

from __future__ import annotations

import csv
import io
import json
import threading
import time
from pathlib import Path

import pytest
import yaml
from factories import SMALL_SPEC as SPEC
from factories import SMALL_SPEC_RUNS as N_RUNS
from factories import finish

from cli.main import main
from service.client import Client
from service.storage import Store


def test_submit_prints_the_id_and_runs_csv_lists_every_run(
    app_client: Client, store: Store, spec_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["submit", str(spec_file)]) == 0
    sid = int(capsys.readouterr().out.strip())
    finish(store, sid)
    assert main(["runs", str(sid), "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert len(rows) == N_RUNS
    assert [int(r["index"]) for r in rows] == list(range(N_RUNS))
    assert {"excess_risk", "train_loss", "converged", "stop_reason", "weight_decay"} <= set(rows[0])
    assert all(float(r["excess_risk"]) == pytest.approx(1 / int(r["n"])) for r in rows)
    assert main(["runs", str(sid), "--format", "json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == N_RUNS
    assert main(["runs", str(sid)]) == 0
    assert f"{N_RUNS} runs" in capsys.readouterr().out


def test_submit_wait_shows_progress_then_exponents(
    app_client: Client, store: Store, spec_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    worker = threading.Thread(target=lambda: (time.sleep(0.2), finish(store, 1, 0.02)))
    worker.start()
    try:
        code = main(["submit", str(spec_file), "--wait"])
    finally:
        worker.join()
    out, err = capsys.readouterr()
    assert code == 0
    assert out.splitlines()[0] == "1"
    assert "succeeded" in out and "exponent" in out and "weight_decay" in out
    # the exponents' title is a line of its own: its newline is not escaped into the text
    lines = out.splitlines()
    title = next(i for i, line in enumerate(lines) if "R ~ C n^-exponent" in line)
    assert "\\n" not in lines[title] and lines[title + 1].split()[0] == "weight_decay"
    assert f"{N_RUNS}/{N_RUNS}" in err and "[" in err


def test_status_cancel_exponents(
    app_client: Client, store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    sid = app_client.submit(SPEC).id
    assert main(["status", str(sid)]) == 0
    assert "queued" in capsys.readouterr().out
    assert main(["cancel", str(sid)]) == 0
    assert "cancelled" in capsys.readouterr().out
    assert main(["exponents", str(sid), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["sweep_id"] == sid


def test_server_errors_print_detail_and_exit_1(
    app_client: Client, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["status", "999"]) == 1
    assert "999" in capsys.readouterr().err
    assert main(["exponents", "999"]) == 1
    sid = app_client.submit(SPEC).id
    assert main(["exponents", str(sid), "--by", "colour"]) == 1
    assert "query.by" in capsys.readouterr().err


def test_unknown_axis_is_refused_before_any_request(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as refused:
        main(["exponents", "1", "--x", "colour", "--server", "http://127.0.0.1:1"])
    assert refused.value.code == 2
    err = capsys.readouterr().err
    assert "--x" in err and "colour" in err and "cannot reach" not in err


def test_invalid_spec_file_is_refused_locally(
    app_client: Client, store: Store, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({**SPEC, "grid": {**SPEC["grid"], "weight_decay": [".nan"]}}))
    bad.write_text(bad.read_text().replace("'.nan'", ".nan"))
    assert main(["submit", str(bad)]) == 2
    assert "grid.weight_decay" in capsys.readouterr().err
    assert main(["submit", str(tmp_path / "missing.yaml")]) == 2
    assert store.list_sweeps().items == []


def test_spec_files_with_a_repeated_key_or_not_utf8_are_refused(
    app_client: Client, store: Store, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repeated = tmp_path / "repeated.yaml"
    text = yaml.safe_dump(SPEC)
    repeated.write_text(text + "model: quadratic\n")  # silently the last one, for PyYAML
    assert main(["submit", str(repeated)]) == 2
    assert "found the key 'model' twice" in capsys.readouterr().err
    latin = tmp_path / "latin1.yaml"
    latin.write_bytes((text + "name: café\n").encode("latin-1"))
    assert main(["submit", str(latin)]) == 2
    err = capsys.readouterr().err
    assert "is not UTF-8 text" in err and "Traceback" not in err
    assert store.list_sweeps().items == []


def test_unreachable_server_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--server", "http://127.0.0.1:9", "status", "1"]) == 1
    assert "cannot reach" in capsys.readouterr().err
