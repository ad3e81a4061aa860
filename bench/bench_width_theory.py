"""The finite-width state evolution (service.theory.quadratic, ``width``) against simulation.

Five studies, each printing its tables and one JSON line (numbers, never asserted):

* ``roots``: the solver's premises at every width: df non-increasing in zeta at fixed sigma
  (a 400-point zeta grid), at most one admissible root of the zeta equation, and one sign
  change of the outer equation ``F(u) = log sqrt((Delta+R)/(4n)) - u`` on 120 points of
  ``u = log sigma`` (d = 20, 40; alpha = 1/4-4; lambda = 1e-3-0.1; Delta = 0, 0.25);
* ``verify``: THEORY.md 5.2's comparison at finite width: alpha = n/d^2 = 1, 2, 4, lambda =
  0.01, 0.03, 0.1, gamma = 1, Delta = 0.01, 0.25, widths 1, 2, 3, 5, 8, d/2, d; the
  rank-constrained minimum (service.theory.rank_sensing: L-BFGS on W from random starts, from
  the convex solution and from the next wider minimum truncated, and from the next narrower
  one; then non-convex proximal gradient to a fixed point; lowest objective kept) averaged
  over seeds, against the SE as served (``predict(..., width=m)``, default draws).
  Agreement: ``0 <= R/R_SE - 1 <= allowance`` within 3 standard errors, the allowance being
  the convex case's measured finite-size excess (service.theory.finite_size), judged outside
  noise fitting (df/n < 0.9);
* ``bump``: the SE risk against the width at fixed (d, n, lambda): at d = 400 the best width,
  the bump and the full-width risk for n = d^2/32 .. d^2 and lambda = 1e-4, 1e-3, 1e-2
  (Delta = 0.25); and at d = 30 the simulated curve next to the SE at alpha = 1/2 and 1/4;
* ``control``: the simulated bump (alpha = ``--control-alpha``, lambda = 1e-3, Delta = 0.25)
  with the network's data and with GOE sensing, the Gaussian design the SE describes
  (THEORY.md 5.3's universality control): which part of R/R_SE - 1 is the x x' - I excess;
* ``draws``: the Monte-Carlo scatter of the width SE over independent draw sets (the
  divergence has a ``1/(mu_m - mu_{m+1})`` term whose variance diverges logarithmically).

Run (OMP_NUM_THREADS=1 on a shared machine; wall times on one core of this 2-core machine)::

    .venv/bin/python bench/bench_width_theory.py roots                       # ~5 min
    .venv/bin/python bench/bench_width_theory.py verify --dims 20 --seeds 8  # ~1 min
    .venv/bin/python bench/bench_width_theory.py verify --dims 40 --seeds 8  # ~3 min
    .venv/bin/python bench/bench_width_theory.py bump --seeds 8              # ~15 min
    .venv/bin/python bench/bench_width_theory.py control --dims 20 30 --seeds 8
    .venv/bin/python bench/bench_width_theory.py control --dims 40 --seeds 8     # ~4 min
    .venv/bin/python bench/bench_width_theory.py control --dims 20 30 --seeds 8 --control-alpha 0.25
    .venv/bin/python bench/bench_width_theory.py draws
"""

from __future__ import annotations

import argparse
import json
import math
import time
from typing import Any, Literal

import numpy as np

from service.teachers import quadratic_eigenvalues
from service.theory import predict
from service.theory.finite_size import NOISE_FITTING_DF, finite_size_excess
from service.theory.point import SEPoint
from service.theory.quadratic import _eig, _risk_df, _solve_zeta, default_draws, goe_draws, solve
from service.theory.rank_sensing import RankSensing, RankSolution, simulate

GAMMA = 1.0
RESTARTS = 3
RESTARTS_UNDER = 16


def widths_for(d: int) -> list[int]:
    return sorted({1, 2, 3, 5, 8, d // 2, d})


def _sim_curve(
    d: int,
    n: int,
    lams: list[float],
    noise: float,
    widths: list[int],
    seed: int,
    sensing: Literal["network", "goe"] = "network",
) -> dict[tuple[float, int], tuple[float, float, float]]:
    """(lambda, m) -> (R, fixed-point residual, spread of the starts) for one data set.

    Per width: random starts (RESTARTS, or RESTARTS_UNDER when n < D, where local minima
    abound), the convex solution and the next wider width's minimum truncated to rank m;
    then a second pass upwards from the next narrower width's minimum (plus one small new
    row); the lowest objective is kept."""
    data = simulate(d, n, GAMMA, noise, seed, sensing=sensing)
    restarts = RESTARTS if n >= d * (d + 1) // 2 else RESTARTS_UNDER
    out: dict[tuple[float, int], tuple[float, float, float]] = {}
    for lam in lams:
        convex = RankSensing(data, lam, None).solve(restarts=1, seed=seed)
        out[(lam, d)] = (data.excess_risk(convex.s), convex.residual, 0.0)
        best: dict[int, RankSolution] = {}
        prev = convex.s
        narrow = sorted(w for w in widths if w < d)
        for m in reversed(narrow):
            best[m] = RankSensing(data, lam, m).solve(
                restarts=restarts, seed=seed * 1000 + m, starts=[convex.s, prev]
            )
            prev = best[m].s
        for lo, m in zip(narrow, narrow[1:], strict=False):
            up = RankSensing(data, lam, m).solve(restarts=0, seed=seed, starts=[best[lo].s])
            if up.objective < best[m].objective:
                objs = best[m].objectives + up.objectives
                best[m] = RankSolution(
                    s=up.s, objective=up.objective, residual=up.residual,
                    spread=(max(objs) - up.objective) / abs(up.objective), objectives=objs,
                )  # fmt: skip
        for m, sol in best.items():
            out[(lam, m)] = (data.excess_risk(sol.s), sol.residual, sol.spread)
    return out


def verify(seeds: int, dims: list[int], alphas: list[float]) -> dict[str, Any]:
    lams = [0.01, 0.03, 0.1]
    noises = [0.01, 0.25]
    rows: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    for d in dims:
        widths = widths_for(d)
        for alpha in alphas:
            n = int(round(alpha * d * d))
            for noise in noises:
                sims: dict[tuple[float, int], list[tuple[float, float, float]]] = {}
                for seed in range(seeds):
                    for k, v in _sim_curve(d, n, lams, noise, widths, seed).items():
                        sims.setdefault(k, []).append(v)
                for lam in lams:
                    for m in widths:
                        pred = predict("quadratic", d, n, lam, GAMMA, noise, width=m)
                        vals = sims[(lam, m)]
                        r = np.array([v[0] for v in vals])
                        mean = float(r.mean())
                        se = float(r.std(ddof=1) / math.sqrt(len(r)))
                        ratio = mean / pred.excess_risk
                        se_rel = 3.0 * se / pred.excess_risk
                        allow = finite_size_excess("quadratic", d, n)
                        nf = pred.df / n >= NOISE_FITTING_DF
                        ok = -se_rel <= ratio - 1.0 <= allow + se_rel
                        rows.append(
                            {
                                "d": d, "n": n, "alpha": alpha, "lam": lam, "noise": noise,
                                "m": m, "R_sim": mean, "se": se, "R_se": pred.excess_risk,
                                "ratio": ratio, "z": (mean - pred.excess_risk) / se,
                                "allowance": allow, "df_n": pred.df / n, "rank_se": pred.support,
                                "noise_fitting": nf, "agrees": ok,
                                "residual": max(v[1] for v in vals),
                                "spread": max(v[2] for v in vals),
                            }
                        )  # fmt: skip
                took = time.perf_counter() - t0
                print(f"  done d={d} alpha={alpha} Delta={noise} ({took:.0f} s)")
    _print_verify(rows, lams)
    judged = [r for r in rows if not r["noise_fitting"]]
    narrow = [r for r in judged if r["m"] < r["d"]]
    return {
        "study": "verify", "seeds": seeds, "dims": dims, "alphas": alphas, "rows": rows,
        "judged": len(judged), "agree": sum(r["agrees"] for r in judged),
        "narrow_judged": len(narrow), "narrow_agree": sum(r["agrees"] for r in narrow),
        "median_ratio_narrow": float(np.median([r["ratio"] for r in narrow])) if narrow else None,
        "wall_s": time.perf_counter() - t0,
    }  # fmt: skip


def _print_verify(rows: list[dict[str, Any]], lams: list[float]) -> None:
    print(
        "\nR_sim/R_SE - 1 in % [z] per width (rows: d, alpha, Delta, lambda); "
        "* = outside 0 <= dev <= allowance within 3 s.e.; nf = noise fitting (df/n >= 0.9)"
    )
    keys = sorted({(r["d"], r["alpha"], r["noise"]) for r in rows})
    for d, alpha, noise in keys:
        widths = widths_for(d)
        head = " | ".join(f"m={m}" for m in widths)
        print(f"\n| d={d} alpha={alpha:g} Delta={noise:g} | allowance | {head} |")
        print("|---|---|" + "---|" * len(widths))
        for lam in lams:
            key = (d, alpha, noise, lam)
            sel = {r["m"]: r for r in rows if (r["d"], r["alpha"], r["noise"], r["lam"]) == key}
            cells = []
            for m in widths:
                r = sel[m]
                flag = "nf" if r["noise_fitting"] else ("" if r["agrees"] else "*")
                cells.append(f"{100 * (r['ratio'] - 1):+.1f} [{r['z']:+.1f}]{flag}")
            allow = f"+{100 * sel[d]['allowance']:.1f}%"
            print(f"| lam={lam:g} | {allow} | " + " | ".join(cells) + " |")
        r_se = {
            (r["lam"], r["m"]): r["R_se"]
            for r in rows
            if (r["d"], r["alpha"], r["noise"]) == (d, alpha, noise)
        }
        per_width = ["/".join(f"{r_se[(lam, m)]:.3g}" for lam in lams) for m in widths]
        label = "/".join(f"{x:g}" for x in lams)
        print(f"| R_SE (lam={label}) | | " + " | ".join(per_width) + " |")
    worst_res = max(r["residual"] for r in rows)
    worst_spread = max(r["spread"] for r in rows)
    print(f"\nlargest fixed-point residual {worst_res:.1e}; largest spread of the starts' "
          f"objectives {worst_spread:.1e}")  # fmt: skip


def roots(dims: list[int]) -> dict[str, Any]:
    """df monotone in zeta, one zeta root, one sign change of F(u)."""
    cases = []
    for d in dims:
        for alpha in (0.25, 0.5, 1.0, 4.0):
            for lam in (1e-3, 0.01, 0.1):
                for noise in (0.0, 0.25):
                    for m in (1, 3, d // 4, d // 2, d):
                        cases.append((d, alpha, lam, noise, m))
    n_mono = n_one_root = n_zeta = 0
    multi: list[str] = []
    for d, alpha, lam, noise, m in cases:
        n = int(round(alpha * d * d))
        width = None if m >= d else m
        k = max(1, default_draws(d) // 4)
        g = goe_draws(d, k, 0)
        traces = np.trace(g, axis1=1, axis2=2)
        lam_star = quadratic_eigenvalues(d, GAMMA)
        lam_sq = float(np.sum(lam_star**2))
        sol = solve(SEPoint(d, n, lam, GAMMA, noise, None, width), draws=k, seed=0)
        e = _eig(lam_star, g, traces, sol.sigma)
        zs = np.linspace(0.0, 1.2 * float(np.max(e.mu)), 400)
        dfs = np.array([_risk_df(e, float(z), lam_sq, width)[1] for z in zs])
        n_mono += bool(np.all(np.diff(dfs) <= 1e-9 * np.maximum(dfs[:-1], 1.0)))
        gz = 4 * zs * (1 - dfs / n) - lam
        admissible = dfs < n
        n_zeta += int(np.sum(np.diff(np.sign(gz[admissible])) != 0)) <= 1
        us = np.linspace(math.log(sol.sigma) - 6, math.log(sol.sigma) + 6, 120)
        fs = []
        for u in us:
            ee = _eig(lam_star, g, traces, math.exp(u))
            z = _solve_zeta(ee, n, lam, lam_sq, width)
            r = _risk_df(ee, z, lam_sq, width)[0]
            fs.append(0.5 * math.log((noise + r) / (4 * n)) - u)
        changes = int(np.sum(np.diff(np.sign(fs)) != 0))
        n_one_root += changes == 1
        if changes != 1:
            multi.append(f"d={d} alpha={alpha} lam={lam} Delta={noise} m={m}: {changes}")
    total = len(cases)
    print(f"\ndf non-increasing in zeta (every draw average, 400-point grid): {n_mono}/{total}")
    print(f"at most one admissible root of 4 zeta (1 - df/n) = lambda: {n_zeta}/{total}")
    print(f"exactly one sign change of F(u) over sigma e^-6..e^6: {n_one_root}/{total}")
    for line in multi:
        print("  ", line)
    return {"study": "roots", "cases": total, "df_monotone": n_mono, "zeta_one_root": n_zeta,
            "outer_one_root": n_one_root, "exceptions": multi}  # fmt: skip


def _se_curve(d: int, n: int, lam: float, noise: float, widths: list[int]) -> list[float]:
    return [predict("quadratic", d, n, lam, GAMMA, noise, width=m).excess_risk for m in widths]


def bump(seeds: int, quick: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"study": "bump", "d400": [], "sim": []}
    d = 400
    widths = sorted({1, 2, 3, 4, 5, 6, 8, 10, 12, 15, 20, 25, 30, 40, 50, 60, 80, 100, 130,
                     160, 200, 250, 300, 400})  # fmt: skip
    noise = 0.25
    alphas = [1 / 16, 1 / 8, 1 / 4] if quick else [1 / 32, 1 / 16, 1 / 8, 1 / 4, 1 / 2, 1]
    lams = [1e-3] if quick else [1e-4, 1e-3, 1e-2]
    print(f"\nSE risk against width, d = {d}, gamma = {GAMMA:g}, Delta = {noise:g} (K = 1)")
    for lam in lams:
        for alpha in alphas:
            n = int(round(alpha * d * d))
            t = time.perf_counter()
            rs = _se_curve(d, n, lam, noise, widths)
            best = int(np.argmin(rs))
            peak = int(np.argmax(rs[best:])) + best
            steps = np.diff(rs)
            row = {
                "lam": lam, "alpha": alpha, "n": n, "widths": widths, "R": rs,
                "best_width": widths[best], "R_best": rs[best], "bump_width": widths[peak],
                "R_bump": rs[peak], "R_full": rs[-1],
                "non_monotone": bool(np.any(steps > 0) and np.any(steps < 0)),
            }  # fmt: skip
            out["d400"].append(row)
            print(
                f"lam={lam:g} alpha={alpha:g} (n={n}): best m={widths[best]} R={rs[best]:.3f}; "
                f"bump m={widths[peak]} R={rs[peak]:.3f}; full R={rs[-1]:.3f}; "
                f"full/best={rs[-1] / rs[best]:.2f} ({time.perf_counter() - t:.0f} s)"
            )
            print("   " + " ".join(f"{m}:{r:.3f}" for m, r in zip(widths, rs, strict=True)))
    # simulated bump at small d
    d = 30
    widths = list(range(1, 13)) + [15, 20, 30]
    for alpha, lam in [(0.5, 1e-3), (0.25, 1e-3)]:
        n = int(round(alpha * d * d))
        se = _se_curve(d, n, lam, noise, widths)
        sims: dict[int, list[float]] = {}
        for seed in range(seeds):
            for (_, m), v in _sim_curve(d, n, [lam], noise, widths, 100 + seed).items():
                sims.setdefault(m, []).append(v[0])
        print(f"\nd={d} alpha={alpha:g} (n={n}) lam={lam:g} Delta={noise:g}, {seeds} seeds:")
        print("| m | R_sim | s.e. | R_SE | ratio | df/n |")
        print("|---|---|---|---|---|---|")
        rows = []
        for m, r_se in zip(widths, se, strict=True):
            r = np.array(sims[m])
            pred = predict("quadratic", d, n, lam, GAMMA, noise, width=m)
            mean, s = float(r.mean()), float(r.std(ddof=1) / math.sqrt(len(r)))
            rows.append({"m": m, "R_sim": mean, "se": s, "R_se": r_se, "df_n": pred.df / n})
            ratio = mean / r_se
            print(f"| {m} | {mean:.4f} | {s:.4f} | {r_se:.4f} | {ratio:.3f} | {pred.df / n:.2f} |")
        out["sim"].append({"d": d, "alpha": alpha, "lam": lam, "noise": noise, "rows": rows})
    return out


def control(seeds: int, dims: list[int], alpha: float) -> dict[str, Any]:
    """The simulated bump with the network's data and with GOE sensing (the SE's Gaussian
    design) at lambda = 1e-3, Delta = 0.25: which part of R_sim/R_SE - 1 is the x x' - I
    excess."""
    out: dict[str, Any] = {"study": "control", "rows": []}
    noise, lam = 0.25, 1e-3
    for d in dims:
        n = int(round(alpha * d * d))
        widths = sorted({1, 2, 3, 4, 6, 8, 10, 12, 15, d // 2, d})
        widths = [m for m in widths if m <= d]
        sims: dict[str, dict[int, list[float]]] = {}
        t = time.perf_counter()
        sensings: tuple[Literal["network", "goe"], ...] = ("network", "goe")
        for sensing in sensings:
            sims[sensing] = {}
            for seed in range(seeds):
                curve = _sim_curve(d, n, [lam], noise, widths, 200 + seed, sensing)
                for (_, m), v in curve.items():
                    sims[sensing].setdefault(m, []).append(v[0])
        took = time.perf_counter() - t
        print(
            f"\nd={d} alpha={alpha:g} (n={n}) lam={lam:g} Delta={noise:g}, {seeds} seeds "
            f"({took:.0f} s): R_sim/R_SE (s.e.) with x x' - I and with GOE sensing"
        )
        print("| m | R_SE | df/n | x x' - I | GOE |")
        print("|---|---|---|---|---|")
        for m in widths:
            pred = predict("quadratic", d, n, lam, GAMMA, noise, width=m)
            row: dict[str, Any] = {"d": d, "n": n, "m": m, "R_se": pred.excess_risk,
                                   "df_n": pred.df / n}  # fmt: skip
            cells = []
            for sensing in ("network", "goe"):
                r = np.array(sims[sensing][m])
                ratio = float(r.mean()) / pred.excess_risk
                se = float(r.std(ddof=1) / math.sqrt(len(r))) / pred.excess_risk
                row[sensing] = (ratio, se)
                cells.append(f"{ratio:.3f} ({se:.3f})")
            out["rows"].append(row)
            head = f"| {m} | {pred.excess_risk:.4f} | {pred.df / n:.2f} | "
            print(head + " | ".join(cells) + " |")
    return out


def draws() -> dict[str, Any]:
    """Std of R over independent draw sets, width vs full width."""
    rows = []
    print("\nrelative std of R_SE over 8 draw sets (K = default_draws(d)), and the mean:")
    cases = [(20, 1.0, 0.01, 0.25), (40, 1.0, 0.01, 0.25), (40, 0.5, 1e-3, 0.25)]
    for d, alpha, lam, noise in cases:
        n = int(round(alpha * d * d))
        k = default_draws(d)
        for m in (1, 3, d // 4, d // 2, d):
            rs = [solve(SEPoint(d, n, lam, GAMMA, noise, None, m), draws=k, seed=s).excess_risk
                  for s in range(8)]  # fmt: skip
            rel = float(np.std(rs, ddof=1) / np.mean(rs))
            rows.append({"d": d, "alpha": alpha, "lam": lam, "m": m, "K": k, "rel_std": rel,
                         "mean": float(np.mean(rs))})  # fmt: skip
            where = f"d={d} alpha={alpha:g} lam={lam:g} m={m} K={k}"
            print(f"{where}: {100 * rel:.2f} % (mean {np.mean(rs):.4f})")
    return {"study": "draws", "rows": rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("study", nargs="?", default="all",
                    choices=["roots", "verify", "bump", "control", "draws", "all"])  # fmt: skip
    ap.add_argument("--seeds", type=int, default=12)
    ap.add_argument("--dims", type=int, nargs="+", default=[20, 40])
    ap.add_argument("--alphas", type=float, nargs="+", default=[1.0, 2.0, 4.0])
    ap.add_argument("--control-alpha", type=float, default=0.5)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    studies = ["roots", "verify", "bump", "control", "draws"]
    studies = studies if args.study == "all" else [args.study]
    for s in studies:
        if s == "roots":
            res = roots(args.dims)
        elif s == "verify":
            res = verify(args.seeds, args.dims, args.alphas)
        elif s == "bump":
            res = bump(args.seeds, args.quick)
        elif s == "control":
            res = control(args.seeds, args.dims, args.control_alpha)
        else:
            res = draws()
        print(json.dumps(res, default=float))


if __name__ == "__main__":
    main()
