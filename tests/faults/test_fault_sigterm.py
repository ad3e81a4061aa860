"""SIGTERM the server (``scalesweep serve --no-ray``) or the runner (``python -m workers
--no-ray``) mid-sweep on a SQLite file: the results that came back are written before exit
(no run left running), a restart finishes the rest, finished runs are not recomputed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import httpx
import pytest
from _faults_util import assert_finished_once, audit, free_port, wait_for

from service.spec import Grid, SweepSpec, TrainingSpec
from service.storage import make_store, upgrade_head

N_RUNS = 32
SPEC = SweepSpec(  # real runs of 0.03-0.05 s each here (convex LASSO, d=1000, n=800)
    name="sigterm",
    model="diagonal",
    teacher={"gamma": 1.0, "noise": 0.01},  # type: ignore[arg-type]
    grid=Grid(d=[1000], n=[800], weight_decay=[0.01], seed=list(range(N_RUNS))),
    training=TrainingSpec(optimizer="convex"),
)
SCALESWEEP = Path(sys.executable).with_name("scalesweep")


def _env(url: str) -> dict[str, str]:
    return dict(
        os.environ,
        SCALESWEEP_DATABASE_URL=url,
        SCALESWEEP_MAX_INFLIGHT_RUNS="2",
        SCALESWEEP_PACK_BELOW_S="0.001",  # one run per task
        SCALESWEEP_RUNNER_POLL_S="0.05",
        # every result written as it comes: the runs left when SIGTERM arrives do not
        # depend on how many finished inside one flush interval (with 0.5 s, fast runs
        # all finished before the first 4 were visible)
        SCALESWEEP_RUNNER_FLUSH_S="0",
        OPENBLAS_NUM_THREADS="1",
    )


class Process:
    """``scalesweep serve --no-ray`` on a free port, or ``python -m workers --no-ray``."""

    def __init__(self, kind: str, url: str, out: Path) -> None:
        self.kind = kind
        self.out = out
        self.port = free_port()
        if kind == "serve":
            argv = [str(SCALESWEEP), "serve", "--no-ray", "--port", str(self.port)]
        else:
            argv = [sys.executable, "-m", "workers", "--no-ray", "--runner-id", out.stem]
        self.proc = subprocess.Popen(  # cwd: no .env of the repository is read
            argv, env=_env(url), cwd=out.parent, stdout=out.open("wb"), stderr=subprocess.STDOUT
        )
        if kind == "serve":
            wait_for(self._healthy, 90, f"the server to answer ({self.output()})")

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _healthy(self) -> bool:
        assert self.proc.poll() is None, self.output()
        try:
            return httpx.get(f"{self.base}/healthz", timeout=5).status_code < 500
        except httpx.HTTPError:
            return False

    def output(self) -> str:
        return self.out.read_text(errors="replace")[-3000:]

    def terminate(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(90)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)


@pytest.mark.parametrize("kind", ["serve", "workers"])
def test_sigterm_mid_sweep_writes_what_came_back_and_a_restart_finishes(
    kind: str, tmp_path: Path, faults_env: None
) -> None:
    if kind == "serve" and not SCALESWEEP.exists():
        pytest.skip(f"no console script at {SCALESWEEP}")
    url = f"sqlite:///{tmp_path}/sigterm.db"
    upgrade_head(url)
    store = make_store(url)
    if kind == "workers":
        sid = store.create_sweep(SPEC, max_runs=100).id

    first = Process(kind, url, tmp_path / "first.out")
    try:
        if kind == "serve":
            r = httpx.post(f"{first.base}/v1/sweeps", json=SPEC.model_dump(mode="json"))
            assert r.status_code == 201, r.text
            sid = r.json()["id"]
        wait_for(lambda: store.get_sweep(sid).counts.get("succeeded", 0) >= 4, 90, "4 runs")
        rc = first.terminate()
    finally:
        first.kill()
    assert rc == 0, first.output()

    before = audit(url, sid)
    counts = before.statuses()
    assert counts["running"] == 0, (counts, first.output())  # written or handed back
    assert set(counts) <= {"succeeded", "queued"} and counts["queued"] > 0, counts
    assert counts["succeeded"] + counts["queued"] == N_RUNS
    done = {i: r for i, r in before.runs.items() if r.status == "succeeded"}
    for r in before.runs.values():  # a handed-back run did not spend an attempt
        assert r.attempts == (1 if r.status == "succeeded" else 0), r
    assert store.metrics().lease_holder is None  # released on the way out

    second = Process(kind, url, tmp_path / "second.out")
    try:
        wait_for(lambda: store.get_sweep(sid).status == "succeeded", 90, "the sweep")
        if kind == "serve":  # the restarted server answers with the finished sweep
            body = httpx.get(f"{second.base}/v1/sweeps/{sid}").json()
            nonzero = {k: v for k, v in body["counts"].items() if v}
            assert body["status"] == "succeeded" and nonzero == {"succeeded": N_RUNS}, body
        rc = second.terminate()
    finally:
        second.kill()
    assert rc == 0, second.output()

    after = audit(url, sid)
    assert_finished_once(after, N_RUNS)  # one attempt each, nothing lost or duplicated
    assert all(r.attempts == 1 for r in after.runs.values())
    for i, r in done.items():  # finished runs were not recomputed
        assert after.runs[i].finished_at == r.finished_at
        assert after.runs[i].attempt_rows == r.attempt_rows
    runners = Counter(rid for r in after.runs.values() for _, rid, _ in r.attempt_rows)
    assert len(runners) == 2 and sum(runners.values()) == N_RUNS, runners
