"""Eight concurrent HTTP clients submitting, extending and cancelling sweeps on PostgreSQL:
every request gets a correct answer (201/200, or 409 for extending a cancelled sweep, never a
5xx) and the database holds exactly the expanded grids, without a duplicate run."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import uvicorn
from _faults_util import audit, free_port, wait_for

from service.config import Settings
from service.spec import Grid, SweepSpec, expand
from service.storage import Store, make_store, upgrade_head

pytestmark = pytest.mark.postgres

CLIENTS = 8
ROUNDS = 3


def _spec(name: str, seeds: list[int], weight_decay: float = 0.1) -> SweepSpec:
    return SweepSpec(
        name=name,
        model="diagonal",
        grid=Grid(d=[3], n=[4], weight_decay=[weight_decay], seed=seeds),
    )


def _hashes(spec: SweepSpec | dict[str, Any]) -> set[str]:
    s = spec if isinstance(spec, SweepSpec) else SweepSpec.model_validate(spec)
    return {cfg.config_hash() for cfg in expand(s)}


@pytest.fixture
def server(pg_url: str) -> Iterator[tuple[str, str, Store]]:
    """The API (no runner: the sweeps stay queued) on a free port, on a fresh PG schema."""
    from api.main import create_app

    upgrade_head(pg_url)
    store = make_store(pg_url)
    settings = Settings(_env_file=None, database_url=pg_url)  # type: ignore[call-arg]
    port = free_port()
    srv = uvicorn.Server(
        uvicorn.Config(create_app(settings, store), host="127.0.0.1", port=port, log_level="error")
    )
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: srv.started or not thread.is_alive(), 60, "the server")
        assert thread.is_alive()
        yield f"http://127.0.0.1:{port}", pg_url, store
    finally:
        srv.should_exit = True
        thread.join(30)
        store.close()


def test_concurrent_submits_and_extends_answer_correctly_and_store_no_duplicate(
    server: tuple[str, str, Store],
) -> None:
    base, url, store = server
    shared = store.create_sweep(_spec("shared", [0, 1]), max_runs=100).id  # everyone extends
    doomed = store.create_sweep(_spec("doomed", [0, 1]), max_runs=100).id  # cancelled midway
    barrier = threading.Barrier(CLIENTS)
    answers: list[tuple[str, int, Any]] = []  # (what, status, sweep id or seed)
    problems: list[str] = []
    own: dict[int, int] = {}
    lock = threading.Lock()

    def check(what: str, r: httpx.Response, ok: tuple[int, ...], sid: int | None) -> None:
        with lock:
            answers.append((what, r.status_code, sid))
            if r.status_code not in ok:
                problems.append(f"{what}: {r.status_code} {r.text[:300]}")
            elif r.status_code == 200 and "spec" in r.json():  # a SweepRecord
                body = r.json()
                if body["n_runs"] != len(_hashes(body["spec"])):
                    problems.append(f"{what}: n_runs {body['n_runs']} != its expanded spec")

    def client(i: int) -> None:
        with httpx.Client(base_url=base, timeout=60) as c:
            barrier.wait()
            # half the clients submit the same configurations (one cache key, many sweeps)
            spec = _spec(f"client-{i}", [0, 1], weight_decay=0.1 if i % 2 else 0.2)
            r = c.post("/v1/sweeps", json=spec.model_dump(mode="json"))
            check("submit", r, (201,), r.json().get("id"))
            if r.status_code != 201:
                return
            sid = r.json()["id"]
            with lock:
                own[i] = sid
            dup = c.post("/v1/sweeps", json=_spec("same", [0, 1, 2]).model_dump(mode="json"))
            check("submit same", dup, (201,), dup.json().get("id"))
            barrier.wait()
            for k in range(ROUNDS):  # overlapping seed lists: only new ones become runs
                r = c.post(f"/v1/sweeps/{sid}/extend", json={"grid": {"seed": [k + 1, k + 2]}})
                check("extend own", r, (200,), sid)
                seeds = [10 + i + k, 11 + i + k]  # overlapping with the neighbours' lists
                r = c.post(f"/v1/sweeps/{shared}/extend", json={"grid": {"seed": seeds}})
                check("extend shared", r, (200,), shared)
                seed = 20 + i + k  # the same seed from up to three clients
                r = c.post(f"/v1/sweeps/{doomed}/extend", json={"grid": {"seed": [seed]}})
                check("extend doomed", r, (200, 409), seed)
                if i == CLIENTS - 1 and k == 1:
                    check("cancel", c.post(f"/v1/sweeps/{doomed}/cancel"), (200,), doomed)
                check("get shared", c.get(f"/v1/sweeps/{shared}"), (200,), shared)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads)
    assert not problems, problems
    statuses = Counter(status for _, status, _ in answers)
    assert not [s for s in statuses if s >= 500], statuses
    per_client = 2 + ROUNDS * 4  # two submits; three extends and a read per round
    assert len(answers) == CLIENTS * per_client + 1, statuses  # + the one cancel

    # the database: exactly the expanded grids, no duplicate (audit checks run rows)
    assert len(own) == CLIENTS
    for i, sid in own.items():
        a = audit(url, sid)
        assert a.n_runs == len(a.runs) == ROUNDS + 2  # seeds 0 .. ROUNDS + 1
        assert a.statuses() == Counter({"queued": ROUNDS + 2})
        assert _hashes(store.get_sweep(sid).spec) == _hashes(
            _spec("x", list(range(ROUNDS + 2)), weight_decay=0.1 if i % 2 else 0.2)
        )
    seeds = [0, 1, *range(10, 10 + CLIENTS + ROUNDS)]
    a = audit(url, shared)
    assert a.n_runs == len(a.runs) == len(seeds)
    assert {r.seed for r in a.runs.values()} == set(seeds)
    assert _hashes(store.get_sweep(shared).spec) == _hashes(_spec("x", seeds))

    added = {seed for what, s, seed in answers if what == "extend doomed" and s == 200}
    doomed_answers = Counter(s for what, s, _ in answers if what == "extend doomed")
    assert doomed_answers.total() == CLIENTS * ROUNDS and doomed_answers[409] > 0
    d = audit(url, doomed)  # every run cancelled, none added after the cancel
    assert d.status == "cancelled" and d.statuses() == Counter({"cancelled": d.n_runs})
    assert d.n_runs == len(_hashes(store.get_sweep(doomed).spec)) == 2 + len(added)
    assert {r.seed for r in d.runs.values()} == {0, 1} | added

    same = [sid for what, _, sid in answers if what == "submit same"]
    assert len(set(same)) == CLIENTS  # eight sweeps of the same three configurations
    for sid in same:
        a = audit(url, sid)
        assert a.n_runs == len(a.runs) == 3 and a.statuses() == Counter({"queued": 3})
