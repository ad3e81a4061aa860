"""Eight identical sweeps POSTed at once are trained once: every configuration is claimed by
the runner once, and every sweep answers succeeded with all its runs' results."""

from __future__ import annotations

import threading
from typing import Any

from api_helpers import N_RUNS, SPEC, TestClient, result

from service.storage import Store

COPIES = 8


def test_identical_sweeps_posted_at_once_train_each_configuration_once(
    client: TestClient, store: Store
) -> None:
    barrier = threading.Barrier(COPIES)
    answers: list[Any] = []

    def post(i: int) -> None:
        barrier.wait()
        answers.append(client.post("/v1/sweeps", json={**SPEC, "name": f"copy {i}"}))

    threads = [threading.Thread(target=post, args=(i,)) for i in range(COPIES)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [a.status_code for a in answers] == [201] * COPIES, [a.text for a in answers]
    ids = sorted(a.json()["id"] for a in answers)

    claims = store.claim_runs("runner", limit=1000, lease_s=60)
    assert len(claims) == N_RUNS  # one run per configuration, not one per sweep
    for sid in ids:  # every sweep waits on (or holds) the running leaders
        body = client.get(f"/v1/sweeps/{sid}").json()
        assert (body["status"], body["counts"]["running"]) == ("running", N_RUNS)
    stored = store.record_results([(c.run_id, result(c.config.config_hash())) for c in claims])
    assert stored == N_RUNS
    assert store.claim_runs("runner", limit=1000, lease_s=60) == []

    trained = {c.run_id for c in claims}
    for sid in ids:
        body = client.get(f"/v1/sweeps/{sid}").json()
        assert (body["status"], body["counts"]["succeeded"]) == ("succeeded", N_RUNS)
        items = client.get(f"/v1/sweeps/{sid}/runs", params={"limit": 1000}).json()["items"]
        assert len(items) == N_RUNS
        for run in items:
            assert run["status"] == "succeeded" and run["metrics"]["excess_risk"] == 0.1
            assert (run["id"] if run["reused_from"] is None else run["reused_from"]) in trained
