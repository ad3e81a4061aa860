"""GET /v1/sweeps/{id}/exponents (service.analysis.exponents; the fits themselves are tested
in tests/service/test_fitting.py)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from api_helpers import TestClient, result, spec

from service.storage import Store


def record_power_law(store: Store, sid: int, beta: dict[float, float]) -> None:
    """R = 5 n^-beta(lambda) * (1 + 0.01 seed); run index 0 fails, index 1 is unconverged."""
    runs = store.list_runs(sid, limit=1000).items
    results = []
    for r in runs:
        c = r.config
        risk = 5.0 * c.n ** -beta[c.weight_decay] * (1 + 0.01 * c.seed)
        if r.index == 0:
            results.append((r.id, result(r.config_hash, status="failed")))
        else:
            results.append((r.id, result(r.config_hash, risk, converged=r.index != 1)))
    store.record_results(results)


def test_exponents_per_group_with_left_out_runs(client: TestClient, store: Store) -> None:
    body = spec(grid__n=[16, 32, 64, 128, 256])  # lambda in {0.01, 0.1}, seeds {0, 1}
    sid = client.post("/v1/sweeps", json=body).json()["id"]
    record_power_law(store, sid, {0.01: 1.0, 0.1: 0.5})
    r = client.get(f"/v1/sweeps/{sid}/exponents", params={"x": "n", "by": "weight_decay"})
    assert r.status_code == 200, r.text
    report: dict[str, Any] = r.json()
    assert report["x"] == "n" and report["by"] == ["weight_decay"]
    groups = {g["group"]["weight_decay"]: g for g in report["groups"]}
    assert set(groups) == {0.01, 0.1}
    # seeds scale R by (1 + 0.01 seed): the pooled log-space fit keeps the exponent exactly
    np.testing.assert_allclose(groups[0.01]["exponent"], 1.0, rtol=1e-8)
    np.testing.assert_allclose(groups[0.1]["exponent"], 0.5, rtol=1e-8)
    # geometric mean over the seeds: 5 sqrt(1.01)
    np.testing.assert_allclose(groups[0.1]["prefactor"], 5.0 * 1.01**0.5, rtol=1e-8)
    assert groups[0.1]["form"] == "power_law"
    lo, hi = groups[0.1]["exponent_ci"]
    assert lo - 1e-9 <= 0.5 <= hi + 1e-9  # exact data: a zero-width interval, 1e-9 round-off
    # index 0 (failed) and 1 (unconverged) are (n=16, lambda=0.01, seeds 0, 1)
    assert groups[0.01]["n_left_out"] == 2 and groups[0.01]["n_points"] == 4
    assert groups[0.01]["n_failed"] == 1 and groups[0.01]["n_unconverged"] == 1
    assert groups[0.1]["n_left_out"] == 0 and groups[0.1]["n_points"] == 5
    assert groups[0.1]["n_runs"] == 10 and groups[0.1]["goodness"] < 0.01
    assert report["bootstrap"] == 200 and report["selection"]
    default = client.get(f"/v1/sweeps/{sid}/exponents").json()
    assert default["by"] == ["weight_decay"]  # every other varying axis
    assert default["groups"] == report["groups"]  # same query, same numbers (fixed seed)


def test_exponents_of_a_queued_sweep_report_pending_runs(client: TestClient) -> None:
    sid = client.post("/v1/sweeps", json=spec()).json()["id"]
    report = client.get(f"/v1/sweeps/{sid}/exponents").json()
    assert all(g["exponent"] is None and g["error"] for g in report["groups"])
    assert sum(g["n_pending"] for g in report["groups"]) == 12


@pytest.mark.parametrize(
    ("params", "field"),
    [({"x": "seed"}, "query.x"), ({"by": "colour"}, "query.by"), ({"by": "n"}, "query.by")],
)
def test_exponents_refuse_unknown_axes(
    client: TestClient, params: dict[str, str], field: str
) -> None:
    sid = client.post("/v1/sweeps", json=spec()).json()["id"]
    r = client.get(f"/v1/sweeps/{sid}/exponents", params=params)
    assert r.status_code == 422
    assert ".".join(r.json()["detail"][0]["loc"]) == field
