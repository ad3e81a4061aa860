"""Scaling-law fits: power law, plateau and broken power law in log space, model choice,
and a bootstrap interval over seeds for the exponent.

See :mod:`service.fitting.forms` (the fits) and :mod:`service.fitting.scaling` (the
selection rule and the interval).
"""

from service.fitting.forms import fit_broken, fit_plateau, fit_power_law
from service.fitting.scaling import ScalingFit, Segment, fit_scaling

__all__ = [
    "ScalingFit",
    "Segment",
    "fit_broken",
    "fit_plateau",
    "fit_power_law",
    "fit_scaling",
]
