"""One place per model: the :class:`Problem` of a run, chosen once from ``cfg.model``.

:func:`problem_for` is the only place in the workers that looks at the model kind; training,
the task and the certificate go through the :class:`Problem` interface
(:mod:`workers.problems.base`).
"""

from __future__ import annotations

from typing import assert_never

from service.spec import RunConfig
from workers.problems.base import Estimate, Problem, Teacher
from workers.problems.diagonal import DiagonalProblem, DiagonalTeacher
from workers.problems.quadratic import QuadraticProblem, QuadraticTeacher

__all__ = [
    "DiagonalProblem",
    "DiagonalTeacher",
    "Estimate",
    "Problem",
    "QuadraticProblem",
    "QuadraticTeacher",
    "Teacher",
    "problem_for",
]


def problem_for(cfg: RunConfig) -> Problem:
    """The problem object of a run's model."""
    match cfg.model:
        case "diagonal":
            return DiagonalProblem(cfg)
        case "quadratic":
            return QuadraticProblem(cfg)
        case _:
            assert_never(cfg.model)
