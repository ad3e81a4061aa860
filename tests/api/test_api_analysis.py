"""The analysis queries over HTTP: exponents, theory, phase diagram, spectra summary, and
GET /v1/runs/{id}/spectrum?theory=true (service.analysis; the numbers themselves are tested
in tests/service/test_analysis.py)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from api_helpers import TestClient, result, spec

from service.analysis.cache import CACHE
from service.results import RankFit, RunResult, Spectrum, TailFit
from service.storage import Store
from service.theory import predict

ROUTES = ("exponents", "theory", "phase-diagram", "spectra/summary")


def submit(client: TestClient, body: dict[str, Any]) -> int:
    r = client.post("/v1/sweeps", json=body)
    assert r.status_code == 201, r.text
    sid: int = r.json()["id"]
    return sid


def record_power_law(
    store: Store, sid: int, *, skip: int = 0, spread: float = 0.0
) -> list[tuple[int, RunResult]]:
    """R = 5 n^-1 (1 + spread seed); the last ``skip`` runs are returned, not recorded."""
    runs = store.list_runs(sid, limit=1000).items
    results = [
        (r.id, result(r.config_hash, 5.0 / r.config.n * (1 + spread * r.config.seed))) for r in runs
    ]
    store.record_results(results[: len(results) - skip])
    return results[len(results) - skip :]


def spectrum_result(config_hash: str, risk: float, alpha: float, rank: float) -> RunResult:
    """result(...) with an abs_theta spectrum that carries tail and rank fits."""
    base = result(config_hash, risk)
    values = sorted((float(v) for v in np.geomspace(1.0, 1e-3, 12)), reverse=True)
    tail = TailFit(
        alpha=alpha, xmin=0.01, n_tail=8, ks_distance=0.05, sigma=0.2,
        alpha_ci=(1.0, 3.0), n_bootstrap=50,
    )  # fmt: skip
    ranks = RankFit(exponent=rank, prefactor=1.0, n_points=6, r2=0.99)
    sp = Spectrum(kind="abs_theta", values=values, tail_fit=tail, rank_fit=ranks)
    return base.model_copy(update={"spectra": [sp]})


def test_unknown_ids_are_404(client: TestClient) -> None:
    for route in ROUTES:
        r = client.get(f"/v1/sweeps/999/{route}")
        assert r.status_code == 404, (route, r.text)
        assert isinstance(r.json()["detail"], str)
    r = client.get("/v1/runs/999/spectrum", params={"theory": "true"})
    assert r.status_code == 404, r.text


@pytest.mark.parametrize("route", ["exponents", "theory"])
@pytest.mark.parametrize(
    ("params", "field"),
    [({"x": "seed"}, "query.x"), ({"by": "colour"}, "query.by"), ({"by": "d,d"}, "query.by")],
)
def test_bad_axes_are_422_naming_the_field(
    client: TestClient, route: str, params: dict[str, str], field: str
) -> None:
    sid = submit(client, spec())
    r = client.get(f"/v1/sweeps/{sid}/{route}", params=params)
    assert r.status_code == 422, r.text
    assert ".".join(r.json()["detail"][0]["loc"]) == field


def test_phase_diagram_of_an_unlinked_sweep_is_422(client: TestClient) -> None:
    sid = submit(client, spec())
    r = client.get(f"/v1/sweeps/{sid}/phase-diagram")
    assert r.status_code == 422, r.text
    (err,) = r.json()["detail"]
    assert err["loc"][-1] == "link" and "link" in err["msg"]


def test_exponents_are_cached_until_a_result_arrives(client: TestClient, store: Store) -> None:
    sid = submit(client, spec(grid__n=[16, 32, 64, 128]))  # 16 runs
    last = record_power_law(store, sid, skip=1)
    params = {"x": "n", "by": "weight_decay"}
    hits = CACHE.hits
    first = client.get(f"/v1/sweeps/{sid}/exponents", params=params)
    second = client.get(f"/v1/sweeps/{sid}/exponents", params=params)
    assert first.status_code == 200, first.text
    assert first.content == second.content  # same query, same JSON, byte for byte
    assert CACHE.hits == hits + 1  # the second answer came from the cache
    groups = first.json()["groups"]
    assert sum(g["n_pending"] for g in groups) == 1 and sum(g["n_runs"] for g in groups) == 15
    for g in groups:
        assert g["exponent"] == pytest.approx(1.0, abs=1e-8)  # exact data; 1e-8 absolute
        lo, hi = g["exponent_ci"]
        assert lo - 1e-9 <= 1.0 <= hi + 1e-9  # tolerance: 1e-9 round-off on the bounds
        assert g["form"] == "power_law" and g["ci_method"]
    assert first.json()["selection"]
    assert store.record_results(last) == 1
    third = client.get(f"/v1/sweeps/{sid}/exponents", params=params).json()
    assert third != first.json()  # the cache was invalidated by the new result
    groups = third["groups"]
    assert sum(g["n_pending"] for g in groups) == 0 and sum(g["n_runs"] for g in groups) == 16
    # another query on the same sweep is its own cache entry
    other = client.get(f"/v1/sweeps/{sid}/exponents", params={"x": "n", "by": ""}).json()
    assert other["by"] == [] and len(other["groups"]) == 1


def test_theory_next_to_measurement(client: TestClient, store: Store) -> None:
    # d=8, 4 n values (a power law's 2 parameters need k + 2 = 4 distinct x), 2 seeds
    sid = submit(client, spec(grid__weight_decay=[0.1], grid__n=[16, 32, 64, 128]))
    record_power_law(store, sid, spread=0.01)
    r = client.get(f"/v1/sweeps/{sid}/theory", params={"x": "n"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["by"] == [] and body["note"] is None
    assert [p["n"] for p in body["points"]] == [16, 32, 64, 128]
    for p in body["points"]:
        want = predict("diagonal", 8, p["n"], 0.1, 1.0, 0.01).excess_risk
        mean = 5.0 / p["n"] * 1.005
        assert p["predicted"]["excess_risk"] == pytest.approx(want, rel=1e-12)  # 1e-12 rel
        assert p["measured_mean"] == pytest.approx(mean, rel=1e-12)  # 1e-12 relative
        assert p["rel_diff"] == pytest.approx((mean - want) / want, rel=1e-9)  # 1e-9 rel
        assert p["n_seeds"] == 2 and p["measured_se"] > 0
    (g,) = body["groups"]
    assert g["x_window"] == [16.0, 128.0] and g["n_points"] == 4
    assert g["measured_exponent"] == pytest.approx(1.0, abs=1e-8)  # exact data; 1e-8 abs
    assert g["predicted_exponent"] is not None and g["form"] == "power_law"
    # one estimator: the exponents query's number and interval, not a second fit
    (ex,) = client.get(f"/v1/sweeps/{sid}/exponents", params={"x": "n", "by": ""}).json()["groups"]
    assert (g["measured_exponent"], g["measured_ci"]) == (ex["exponent"], ex["exponent_ci"])


def test_phase_diagram_over_http(client: TestClient, store: Store) -> None:
    body = spec(link={"weight_decay": {"coef": 0.5, "of": "n", "power": [-1.0, -0.25, -0.5]}})
    del body["grid"]["weight_decay"]
    body["grid"]["d"] = [2000]
    body["grid"]["n"] = [16, 32, 64, 128]
    sid = submit(client, body)  # 3 powers x 4 n x 2 seeds
    results = []
    for run in store.list_runs(sid, limit=1000).items:
        c = run.config
        r_se = predict("diagonal", 2000, c.n, c.weight_decay, 1.0, 0.01).excess_risk
        results.append((run.id, result(run.config_hash, r_se)))
    store.record_results(results)
    r = client.get(f"/v1/sweeps/{sid}/phase-diagram")
    assert r.status_code == 200, r.text
    families = r.json()["families"]
    assert [f["power"] for f in families] == [-1.0, -0.5, -0.25]
    assert [f["heuristic_regime"] for f in families] == [
        "noise fitting",
        "tuned",
        "bias-dominated",
    ]
    for f in families:
        assert f["regime"] and f["n_runs"] == 8
        # measured R = the SE's R: tolerance 1e-6 absolute on the exponent
        assert f["measured_exponent"] == pytest.approx(f["se_exponent"], abs=1e-6)


def test_spectra_summary_over_http(client: TestClient, store: Store) -> None:
    sid = submit(client, spec(grid__weight_decay=[0.1], grid__n=[16]))  # 2 seeds
    runs = store.list_runs(sid, limit=1000).items
    fits = {0: (1.8, 2.2), 1: (2.2, 1.8)}
    store.record_results(
        [
            (r.id, spectrum_result(r.config_hash, 0.1 * (1 + r.config.seed), *fits[r.config.seed]))
            for r in runs
        ]
    )
    r = client.get(f"/v1/sweeps/{sid}/spectra/summary")
    assert r.status_code == 200, r.text
    (p,) = r.json()["points"]
    assert p["kind"] == "abs_theta" and p["n_runs"] == 2
    assert p["tail_alpha_mean"] == pytest.approx(2.0, rel=1e-12)  # tolerance: 1e-12 relative
    # SE of the mean of {1.8, 2.2}: 0.2
    assert p["tail_alpha_se"] == pytest.approx(0.2, rel=1e-9)  # tolerance: 1e-9 relative
    assert p["rank_exponent_mean"] == pytest.approx(2.0, rel=1e-12)  # 1e-12 relative
    assert p["excess_risk_mean"] == pytest.approx(0.15, rel=1e-12)  # 1e-12 relative
    assert p["n_tail_mean"] == 8.0
    assert p["predicted_alpha_ww"] == pytest.approx(2.0, rel=1e-15)  # 1 + 1/gamma; 1e-15 rel


def test_spectrum_with_theory(client: TestClient, store: Store) -> None:
    body = spec(grid__weight_decay=[0.05], grid__n=[32], grid__seed=[0])
    body["teacher"]["gamma"] = 1.5
    sid = submit(client, body)
    (run,) = store.list_runs(sid).items
    plain = client.get(f"/v1/runs/{run.id}/spectrum", params={"theory": "true"})
    assert plain.status_code == 200, plain.text  # a queued run still has its prediction
    store.record_results([(run.id, result(run.config_hash, 0.05, spectrum=True))])
    r = client.get(f"/v1/runs/{run.id}/spectrum", params={"theory": "true"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["spectra"][0]["kind"] == "abs_theta" and body["theory_error"] is None
    th = body["theory"]
    values = th["predicted_values"]
    assert th["kind"] == "abs_theta" and len(values) == 8  # d
    assert all(a >= b for a, b in zip(values, values[1:], strict=False))  # sorted, decreasing
    assert all(v >= 0 for v in values) and values[0] > 0
    assert th["predicted_alpha_ww"] == pytest.approx(1 + 1 / 1.5, rel=1e-15)  # 1e-15 rel
    assert th["gamma"] == 1.5
    want = predict("diagonal", 8, 32, 0.05, 1.5, 0.01)
    assert th["predicted_support"] == pytest.approx(want.support, rel=1e-12)  # 1e-12 rel
    assert th["zeta"] == pytest.approx(want.zeta, rel=1e-12)  # tolerance: 1e-12 relative
    without = client.get(f"/v1/runs/{run.id}/spectrum").json()
    assert without["theory"] is None and without["spectra"] == body["spectra"]


def test_spectrum_theory_of_a_signed_quadratic_run_says_why(client: TestClient) -> None:
    body = spec(grid__weight_decay=[0.05], grid__n=[32], grid__seed=[0], grid__d=[4])
    body["model"] = "quadratic"
    body["teacher"]["signed"] = True
    body["training"]["second_layer"] = "signed"
    r = client.post("/v1/sweeps", json=body)
    if r.status_code != 201:
        pytest.skip(f"signed quadratic spec not accepted here: {r.text}")
    run = client.get(f"/v1/sweeps/{r.json()['id']}/runs").json()["items"][0]
    out = client.get(f"/v1/runs/{run['id']}/spectrum", params={"theory": "true"}).json()
    assert out["theory"] is None and "PSD" in out["theory_error"]


def test_openapi_documents_the_analysis_routes(client: TestClient) -> None:
    doc = client.get("/openapi.json").json()
    paths = doc["paths"]
    for route in ROUTES:
        op = paths[f"/v1/sweeps/{{sweep_id}}/{route}"]["get"]
        assert {"200", "404", "422"} <= set(op["responses"]), route
    exps = paths["/v1/sweeps/{sweep_id}/exponents"]["get"]
    assert {p["name"] for p in exps["parameters"]} >= {"sweep_id", "x", "by"}
    spectrum = paths["/v1/runs/{run_id}/spectrum"]["get"]
    assert "theory" in {p["name"] for p in spectrum["parameters"]}
    schemas = doc["components"]["schemas"]
    assert {"ExponentReport", "TheoryReport", "PhaseDiagram", "SpectraSummary"} <= set(schemas)
    assert "SpectrumTheory" in schemas
