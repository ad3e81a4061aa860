"""Spectra next to generalisation: per grid point the heavy-tail and rank-ordered exponents of
the trained weights beside the excess risk, and one run's spectrum beside its SE prediction
(THEORY.md 3.1, 4.5 and 6: alpha_WW = 1 + 1/gamma for the retained part). A quadratic network
narrower than d is predicted at its width (rank <= m, :mod:`service.theory.quadratic`), and a
width sweep has one grid point per width."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from service.analysis.grouping import mean_se, usable
from service.analysis.reports import SpectraPoint, SpectraSummary, SpectrumTheory
from service.records import RunPoint, RunRecord, SpectrumPoint
from service.results import Spectrum
from service.theory import predict, predicted_alpha_ww, predicted_spectrum


def main_kind(model: str) -> str:
    """The spectrum the paper's link is about: eig(S) (quadratic) or |theta| (diagonal)."""
    return "eig_S" if model == "quadratic" else "abs_theta"


def sweep_spectra_summary(
    sweep_id: int, points: Sequence[RunPoint], spectra: Sequence[SpectrumPoint]
) -> SpectraSummary:
    """Per grid point, the tail and rank exponents of the main spectrum next to R."""
    by_run: dict[int, SpectrumPoint] = {}
    kinds: dict[int, str] = {p.run_id: main_kind(p.model) for p in points}
    for sp in spectra:
        if kinds.get(sp.run_id) == sp.kind:
            by_run[sp.run_id] = sp
    cells: dict[tuple[object, ...], list[RunPoint]] = defaultdict(list)
    for p in points:
        if usable(p):
            cells[(p.d, p.n, p.weight_decay, p.gamma, p.noise, p.link_power, p.width)].append(p)
    out = []
    for (d, n, wd, gamma, noise, lp, width), members in sorted(
        cells.items(), key=lambda kv: tuple(v if v is not None else -1.0 for v in kv[0])
    ):
        risks = [float(m.excess_risk) for m in members]  # type: ignore[arg-type]
        tails = [by_run[m.run_id] for m in members if m.run_id in by_run]
        alphas = [t.tail_alpha for t in tails if t.tail_alpha is not None]
        ranks = [t.rank_exponent for t in tails if t.rank_exponent is not None]
        ntail = [float(t.n_tail) for t in tails if t.n_tail is not None]
        r_mean, r_se = mean_se(risks)
        a_mean, a_se = mean_se(alphas)
        k_mean, k_se = mean_se(ranks)
        out.append(
            SpectraPoint(
                d=int(d),  # type: ignore[call-overload]
                n=int(n),  # type: ignore[call-overload]
                weight_decay=float(wd),  # type: ignore[arg-type]
                gamma=float(gamma),  # type: ignore[arg-type]
                noise=float(noise),  # type: ignore[arg-type]
                link_power=lp,  # type: ignore[arg-type]
                width=int(width),  # type: ignore[call-overload]
                kind=main_kind(members[0].model),
                n_runs=len(members),
                excess_risk_mean=r_mean,
                excess_risk_se=r_se,
                tail_alpha_mean=a_mean,
                tail_alpha_se=a_se,
                n_tail_fits=len(alphas),
                n_tail_mean=float(np.mean(ntail)) if ntail else None,
                rank_exponent_mean=k_mean,
                rank_exponent_se=k_se,
                predicted_alpha_ww=predicted_alpha_ww(float(gamma)),  # type: ignore[arg-type]
            )
        )
    return SpectraSummary(
        sweep_id=sweep_id,
        points=out,
        note=(
            "tail_alpha: continuous power-law MLE of the largest values of the certified "
            "minimum above the certificate's resolution (xmin by minimal KS distance), averaged "
            "over the runs with a fit (n_tail_fits); a run has none with fewer than 10 values "
            "or when the KS goodness-of-fit test rejects the power law (p < 0.1). Only the part "
            "well above the threshold and the noise bulk is a power law, so compare with "
            "1 + 1/gamma where n_tail is large (THEORY.md 6)"
        ),
    )


def spectrum_theory(run: RunRecord, spectra: Sequence[Spectrum]) -> SpectrumTheory | str:
    """The prediction for ``run``'s main spectrum, or why there is none."""
    cfg = run.config
    if cfg.teacher.signed:
        return "no prediction: the state evolution here covers the PSD quadratic model only"
    args = (cfg.model, cfg.d, cfg.n, cfg.weight_decay, cfg.teacher.gamma, cfg.teacher.noise)
    pred = predict(*args, cfg.teacher.rank, width=cfg.width)  # width >= d: the full width
    values = predicted_spectrum(pred)
    kind = main_kind(cfg.model)
    measured = next((s for s in spectra if s.kind == kind), None)
    return SpectrumTheory(
        kind=kind,
        predicted_values=[float(v) for v in values],
        predicted_support=pred.support,
        zeta=pred.zeta,
        predicted_alpha_ww=predicted_alpha_ww(cfg.teacher.gamma),
        measured_tail_alpha=measured.tail_fit.alpha if measured and measured.tail_fit else None,
        measured_rank_exponent=(
            measured.rank_fit.exponent if measured and measured.rank_fit else None
        ),
        gamma=cfg.teacher.gamma,
        note=pred.finite_size_note,
    )
