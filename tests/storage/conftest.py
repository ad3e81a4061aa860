"""Fixtures of the storage tests: small sweep specs and hand-built run results (factories)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import factories
import pytest

from service.results import RunResult
from service.spec import SweepSpec

SpecFactory = Callable[..., SweepSpec]
ResultFactory = Callable[..., RunResult]


def build_spec(**grid: Any) -> SweepSpec:
    """A diagonal-model sweep; grid d=[4], n=[8, 16], weight_decay=[0.01, 0.1], seed=[0, 1]."""
    return factories.diagonal_spec(**grid)


def build_result(
    config_hash: str,
    *,
    excess_risk: float = 0.125,
    status: str = "succeeded",
    n_curve: int = 3,
    spectra: bool = True,
) -> RunResult:
    """A RunResult as a worker would send it, with a spectrum and a learning curve."""
    return factories.result(
        config_hash,
        excess_risk,
        status=status,
        spectra=[factories.spectrum(tail=factories.tail_fit())] if spectra else [],
        learning_curve=factories.curve(n_curve),
        steps=42,
        wall_time_s=0.5,
        penalty_norm=1.5,
    )


@pytest.fixture
def make_spec() -> SpecFactory:
    """Factory of small sweep specs (keyword arguments override grid axes, name, recompute)."""
    return build_spec


@pytest.fixture
def make_result() -> ResultFactory:
    """Factory of RunResults for a config_hash."""
    return build_result
