"""The fitted curve of a group, on a log grid over its window, with the exponent's band.

What the dashboard and the figures draw next to the measured points: R(x) of the chosen
form (power law C x^-beta, plateau R_inf + C x^-beta, or the broken power law joined
continuously at its breaks), and a band for the exponent's 95% interval. The band turns the
last power-law segment to each end of the interval about the geometric middle of the window
(where a log-log fit is best determined), or, for a broken power law, about its last break,
so that the earlier segments stay as fitted and the band is continuous; it shows the
exponent's uncertainty, not a prediction interval of single runs.
"""

from __future__ import annotations

import math

import numpy as np

from service.analysis.reports import CurvePoint, GroupFit

POINTS = 40


def _power_part(fit: GroupFit, x: np.ndarray, beta: float, pivot: float) -> np.ndarray:
    """C x^-exponent of the last segment, turned about ``pivot`` to exponent ``beta``."""
    assert fit.prefactor is not None and fit.exponent is not None
    at_pivot = fit.prefactor * pivot ** (-fit.exponent)
    out: np.ndarray = at_pivot * (x / pivot) ** (-beta)
    return out


def _model(fit: GroupFit, x: np.ndarray, beta: float, pivot: float) -> np.ndarray:
    """The fitted form at x, its last segment's exponent set to ``beta``."""
    y = _power_part(fit, x, beta, pivot)
    if fit.form == "plateau":
        return y + (fit.plateau or 0.0)
    if fit.form != "broken_power_law" or not fit.segments:
        return y
    # walk the earlier segments backwards from the last break, continuous at each break
    out = y.copy()
    edges = [s.x_from for s in fit.segments[1:]]  # the breaks, in increasing order
    level_at = float(_power_part(fit, np.array([edges[-1]]), beta, pivot)[0]) if edges else 0.0
    for seg, right in zip(reversed(fit.segments[:-1]), reversed(edges), strict=True):
        inside = x < right
        out[inside] = level_at * (x[inside] / right) ** (-seg.exponent)
        level_at = level_at * (seg.x_from / right) ** (-seg.exponent)
    return out


def fitted_curve(fit: GroupFit, points: int = POINTS) -> list[CurvePoint]:
    """The chosen form over the fitted window with the exponent band (empty without a fit)."""
    if fit.form is None or fit.exponent is None or fit.prefactor is None or not fit.segments:
        return []
    lo_x, hi_x = fit.segments[0].x_from, fit.segments[-1].x_to
    if not (0 < lo_x < hi_x and math.isfinite(hi_x)):
        return []
    x = np.geomspace(lo_x, hi_x, points)
    last = fit.segments[-1]
    broken = fit.form == "broken_power_law" and len(fit.segments) > 1
    pivot = last.x_from if broken else math.sqrt(last.x_from * last.x_to)
    y = _model(fit, x, fit.exponent, pivot)
    ci = fit.exponent_ci or (fit.exponent, fit.exponent)
    bounds = np.stack([_model(fit, x, b, pivot) for b in ci] + [y])
    lo, hi = bounds.min(axis=0), bounds.max(axis=0)
    return [
        CurvePoint(x=float(a), fit=float(b), lo=float(c), hi=float(d))
        for a, b, c, d in zip(x, y, lo, hi, strict=True)
    ]
