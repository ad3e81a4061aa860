"""The schema comes only from Alembic, and the revisions match service.storage.tables."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from factories import diagonal_spec
from sqlalchemy import JSON, Connection, column, create_engine, insert, inspect, table, text

from service.errors import StorageError
from service.spec import SweepSpec, expand
from service.storage import check_schema, make_store, upgrade_head
from service.storage.codec import config_columns, encode_values
from service.storage.migrate import alembic_config, current_revisions, head_revisions
from service.storage.tables import Base, UTCDateTime

TABLES = {
    "sweeps",
    "runs",
    "spectra",
    "curves",
    "attempts",
    "runner_lease",
    "api_tokens",
    "submissions",
    "sweep_tags",
    "run_leaders",
    "alembic_version",
}


def test_upgrade_from_empty_reaches_head(store_url: str) -> None:
    upgrade_head(store_url)
    check_schema(store_url)
    assert current_revisions(store_url) == head_revisions()
    engine = create_engine(store_url)
    try:
        assert set(inspect(engine).get_table_names()) == TABLES
    finally:
        engine.dispose()
    upgrade_head(store_url)  # idempotent


def test_no_pending_autogenerate_diff(store_url: str) -> None:
    upgrade_head(store_url)
    engine = create_engine(store_url)
    try:
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True})
            assert compare_metadata(ctx, Base.metadata) == []
    finally:
        engine.dispose()


def test_single_head() -> None:
    heads = ScriptDirectory.from_config(alembic_config("sqlite://")).get_heads()
    assert len(heads) == 1


def test_downgrade_base_then_upgrade_head(store_url: str) -> None:
    upgrade_head(store_url)
    cfg = alembic_config(store_url)
    command.downgrade(cfg, "base")
    assert current_revisions(store_url) == ()
    engine = create_engine(store_url)
    try:
        assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    finally:
        engine.dispose()
    upgrade_head(store_url)
    check_schema(store_url)


def test_check_schema_refuses_empty_database(store_url: str) -> None:
    with pytest.raises(StorageError, match="alembic upgrade head"):
        check_schema(store_url)


def test_check_schema_refuses_unknown_revision(store_url: str) -> None:
    upgrade_head(store_url)
    engine = create_engine(store_url)
    try:
        with engine.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = 'f00dfeed9999'"))
    finally:
        engine.dispose()
    with pytest.raises(StorageError, match="f00dfeed9999.*does not know"):
        check_schema(store_url)
    with pytest.raises(StorageError, match="does not know"):
        upgrade_head(store_url)


def test_check_schema_refuses_older_revision(store_url: str) -> None:
    upgrade_head(store_url)
    command.downgrade(alembic_config(store_url), "base")
    command.stamp(alembic_config(store_url), "base")
    with pytest.raises(StorageError):
        check_schema(store_url)


def test_concurrent_upgrades_are_safe(store_url: str) -> None:
    # processes, like servers starting at once (Alembic's context is process-global)
    code = "import sys; from service.storage import upgrade_head; upgrade_head(sys.argv[1])"
    procs = [
        subprocess.Popen([sys.executable, "-c", code, store_url], stderr=subprocess.PIPE)
        for _ in range(2)
    ]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err.decode()
    check_schema(store_url)


def test_sqlite_is_safe_by_default(tmp_path: object) -> None:
    url = f"sqlite:///{tmp_path}/pragmas.db"
    upgrade_head(url)
    store = make_store(url)
    try:
        with store._engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000
    finally:
        store.close()


def _rows_at_0005(url: str) -> dict[str, int]:
    """Upgrade to 0005 and store two sweeps as that schema holds them: runs (one reusing
    the other's), spectra, curves, attempts, tags and a token; returns the row counts."""
    command.upgrade(alembic_config(url), "0005")
    spec = diagonal_spec(name="old", n=[8], weight_decay=[0.1])
    now = datetime.now(UTC)
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            for sweep_id in (1, 2):
                conn.execute(
                    insert(_SWEEPS),
                    {
                        "id": sweep_id,
                        "name": f"old {sweep_id}",
                        "spec": spec.model_dump(mode="json"),
                        "status": "succeeded",
                        "n_runs": 2,
                        "created_at": now,
                        "updated_at": now,
                        "team": None,
                        "archived": False,
                    },
                )
                for index, cfg in enumerate(expand(spec)):
                    run_id = 10 * sweep_id + index
                    conn.execute(
                        insert(_RUNS),
                        {
                            **config_columns(cfg, cfg.config_hash()),
                            "id": run_id,
                            "sweep_id": sweep_id,
                            "run_index": index,
                            "status": "succeeded",
                            "attempts": sweep_id % 2,
                            "created_at": now,
                            "reused_from": run_id - 10 if sweep_id == 2 else None,
                        },
                    )
                    conn.execute(
                        insert(_SPECTRA),
                        {
                            "run_id": run_id,
                            "kind": "abs_theta",
                            "n_values": 1,
                            "values": encode_values([1.0]),
                        },
                    )
                    conn.execute(
                        insert(_CURVES),
                        [
                            {"run_id": run_id, "step": s, "train_loss": 1.0, "excess_risk": 2.0}
                            for s in (0, 10)
                        ],
                    )
                    if sweep_id == 1:
                        conn.execute(
                            insert(_ATTEMPTS),
                            {"run_id": run_id, "attempt": 1, "runner_id": "r", "started_at": now},
                        )
                conn.execute(insert(_TAGS), {"sweep_id": sweep_id, "tag": "paper"})
            conn.execute(
                insert(_TOKENS),
                {
                    "id": 3,
                    "key_id": "k",
                    "token_hash": "0" * 64,
                    "name": "t",
                    "scope": "admin",
                    "created_at": now,
                },
            )
            if conn.dialect.name == "postgresql":  # rows given ids, as if the sequences had
                for name in ("sweeps", "runs", "api_tokens"):
                    conn.execute(
                        text(
                            f"SELECT setval(pg_get_serial_sequence('{name}', 'id'), max(id)) "
                            f"FROM {name}"
                        )
                    )
            return _counts(conn)
    finally:
        engine.dispose()


def _counts(conn: Connection) -> dict[str, int]:
    return {
        name: int(conn.execute(text(f"SELECT count(*) FROM {name}")).scalar_one())
        for name in ("sweeps", "runs", "spectra", "curves", "attempts", "sweep_tags", "api_tokens")
    }


_SWEEPS = table(
    "sweeps",
    column("id"),
    column("name"),
    column("spec", JSON),
    column("status"),
    column("n_runs"),
    column("created_at", UTCDateTime()),
    column("updated_at", UTCDateTime()),
    column("team"),
    column("archived"),
)
_RUNS = table(
    "runs",
    column("id"),
    column("sweep_id"),
    column("run_index"),
    column("config", JSON),
    *(
        column(c)
        for c in (
            "config_hash",
            "model",
            "d",
            "n",
            "weight_decay",
            "gamma",
            "noise",
            "seed",
            "optimizer",
            "link_power",
            "status",
            "attempts",
            "reused_from",
        )
    ),
    column("created_at", UTCDateTime()),
)
_SPECTRA = table("spectra", column("run_id"), column("kind"), column("n_values"), column("values"))
_CURVES = table(
    "curves", column("run_id"), column("step"), column("train_loss"), column("excess_risk")
)
_ATTEMPTS = table(
    "attempts",
    column("run_id"),
    column("attempt"),
    column("runner_id"),
    column("started_at", UTCDateTime()),
)
_TAGS = table("sweep_tags", column("sweep_id"), column("tag"))
_TOKENS = table(
    "api_tokens",
    column("id"),
    column("key_id"),
    column("token_hash"),
    column("name"),
    column("scope"),
    column("created_at", UTCDateTime()),
)


def test_upgrade_0005_to_head_keeps_every_row_and_ids_are_never_reused(store_url: str) -> None:
    before = _rows_at_0005(store_url)
    assert before == {
        "sweeps": 2,
        "runs": 4,
        "spectra": 4,
        "curves": 8,
        "attempts": 2,
        "sweep_tags": 2,
        "api_tokens": 1,
    }
    upgrade_head(store_url)
    check_schema(store_url)
    engine = create_engine(store_url)
    try:
        with engine.connect() as conn:
            assert _counts(conn) == before  # nothing cascaded away while tables were rebuilt
            if conn.dialect.name == "sqlite":
                assert conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall() == []
                for name in ("sweeps", "runs", "api_tokens"):
                    ddl = conn.execute(
                        text("SELECT sql FROM sqlite_master WHERE name = :n"), {"n": name}
                    ).scalar_one()
                    assert "AUTOINCREMENT" in ddl
    finally:
        engine.dispose()

    store = make_store(store_url)
    try:
        old = store.get_sweep(2)
        assert (old.name, old.status, old.tags, old.counts["succeeded"]) == (
            "old 2",
            "succeeded",
            ["paper"],
            2,
        )
        runs = store.list_runs(2).items
        assert [(r.id, r.reused_from, r.attempts) for r in runs] == [(20, 10, 0), (21, 11, 0)]
        assert len(store.get_run(20).curve) == 2 and len(store.get_spectra(20)) == 1
        # the old results are reused by a new sweep, and new ids continue after the old ones
        new = store.create_sweep(diagonal_spec(name="old", n=[8], weight_decay=[0.1]), max_runs=9)
        assert new.id == 3 and new.status == "succeeded"
        assert {r.reused_from for r in store.list_runs(new.id).items} == {10, 11}
        newest = store.create_sweep(diagonal_spec(name="new", seed=[9]), max_runs=9)
        store.delete_sweep(newest.id)
        assert store.create_sweep(diagonal_spec(name="next"), max_runs=9).id == newest.id + 1
    finally:
        store.close()


def test_upgrade_0006_to_head_fills_the_width_column_from_the_config(store_url: str) -> None:
    """0007 adds ``runs.width`` and fills it from each row's config JSON: training.width,
    else d (2d with a signed second layer), d for the diagonal net."""
    command.upgrade(alembic_config(store_url), "0006")
    specs = [
        diagonal_spec(name="diagonal", d=[6], n=[8], weight_decay=[0.1], seed=[0]),
        *(
            SweepSpec.model_validate(
                {
                    "model": "quadratic",
                    "grid": {"d": [5], "n": [30], "weight_decay": [0.1], "seed": [0]},
                    "training": training,
                }
            )
            for training in ({}, {"second_layer": "signed"}, {"width": 3}, {"width": 40})
        ),
    ]
    now = datetime.now(UTC)
    engine = create_engine(store_url)
    try:
        with engine.begin() as conn:
            for sweep_id, spec in enumerate(specs, start=1):
                conn.execute(
                    insert(_SWEEPS),
                    {
                        "id": sweep_id,
                        "name": spec.name,
                        "spec": spec.model_dump(mode="json"),
                        "status": "queued",
                        "n_runs": 1,
                        "created_at": now,
                        "updated_at": now,
                        "team": None,
                        "archived": False,
                    },
                )
                (cfg,) = expand(spec)
                columns = config_columns(cfg, cfg.config_hash())
                del columns["width"]  # the 0006 schema has no such column
                conn.execute(
                    insert(_RUNS),
                    {
                        **columns,
                        "id": 10 * sweep_id,
                        "sweep_id": sweep_id,
                        "run_index": 0,
                        "status": "queued",
                        "attempts": 0,
                        "created_at": now,
                        "reused_from": None,
                    },
                )
            if conn.dialect.name == "postgresql":
                for name in ("sweeps", "runs"):
                    conn.execute(
                        text(
                            f"SELECT setval(pg_get_serial_sequence('{name}', 'id'), max(id)) "
                            f"FROM {name}"
                        )
                    )
    finally:
        engine.dispose()
    upgrade_head(store_url)
    check_schema(store_url)
    store = make_store(store_url)
    try:
        widths = [store.run_points(sweep_id)[0].width for sweep_id in range(1, 6)]
        assert widths == [6, 5, 10, 3, 40]
        assert [r.config.width for s in range(1, 6) for r in store.list_runs(s).items] == widths
        assert [r.sweep_id for r in store.list_runs(4, filters={"width": 3}).items] == [4]
        # the rebuilt table keeps its ids growing: the next run's id is past the old ones
        new = store.create_sweep(specs[1], max_runs=9, team="other")
        assert store.list_runs(new.id).items[0].id > 50
    finally:
        store.close()
    engine = create_engine(store_url)
    try:
        with engine.connect() as conn:
            width = next(c for c in inspect(engine).get_columns("runs") if c["name"] == "width")
            assert width["nullable"] is False
            if conn.dialect.name == "sqlite":
                ddl = conn.execute(
                    text("SELECT sql FROM sqlite_master WHERE name = 'runs'")
                ).scalar_one()
                assert "AUTOINCREMENT" in ddl
    finally:
        engine.dispose()
