"""record_submission: the per-key submission limit, counted in the database."""

from __future__ import annotations

import threading
from datetime import timedelta

from sqlalchemy import insert

from service.storage import Store, make_store
from service.storage.queue import utcnow
from service.storage.tables import Submission

HOUR = 3600.0


def test_a_key_gets_its_limit_then_a_wait(store: Store) -> None:
    assert store.record_submission("token:1", limit=2, window_s=HOUR) is None
    assert store.record_submission("token:1", limit=2, window_s=HOUR) is None
    wait = store.record_submission("token:1", limit=2, window_s=HOUR)
    assert wait is not None and 0.0 < wait <= HOUR  # until the first one leaves the window
    assert store.record_submission("token:2", limit=2, window_s=HOUR) is None  # per key
    assert store.record_submission("token:1", limit=3, window_s=HOUR) is None  # refused: uncounted


def test_submissions_older_than_the_window_are_forgotten(store: Store) -> None:
    with store._engine.begin() as conn:  # two submissions two hours ago
        old = utcnow() - timedelta(hours=2)
        conn.execute(insert(Submission), [{"key": "k", "at": old}, {"key": "k", "at": old}])
    assert store.record_submission("k", limit=2, window_s=HOUR) is None
    assert store.record_submission("k", limit=2, window_s=HOUR) is None
    assert store.record_submission("k", limit=2, window_s=HOUR) is not None


def test_concurrent_submissions_through_two_stores_admit_exactly_the_limit(
    store_url: str, store: Store
) -> None:
    # two stores with their own connection pools: two API processes on one database
    other = make_store(store_url)
    admitted: list[bool] = []
    lock = threading.Lock()
    start = threading.Barrier(8)

    def submit(st: Store) -> None:
        start.wait()
        ok = st.record_submission("token:7", limit=5, window_s=HOUR) is None
        with lock:
            admitted.append(ok)

    threads = [threading.Thread(target=submit, args=(s,)) for s in [store, other] * 4]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
    finally:
        other.close()
    assert len(admitted) == 8 and admitted.count(True) == 5
