"""The public prediction API: one cached state-evolution solve per parameter set.

``predict`` returns the scalar summary (:class:`Prediction`), ``predicted_spectrum(prediction)``
the predicted sorted weight spectrum. Both are cached per configuration
(:class:`~service.theory.point.SEPoint`), draws and seed; the arrays handed out are copies.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import numpy as np

from service.teachers import Array
from service.theory import diagonal, quadratic
from service.theory.heuristics import finite_size_note
from service.theory.point import SEPoint

Model = Literal["diagonal", "quadratic"]


@dataclass(frozen=True)
class Prediction:
    """State-evolution prediction for one configuration (THEORY.md section 0).

    ``tau`` is set for the diagonal model, ``sigma`` for the quadratic one; ``support`` is the
    predicted number of non-zeros (diagonal: df) or the predicted rank ``E #{mu_i > zeta}``
    (quadratic); ``train_mse = (1 - df/n)^2 (Delta + R)``; ``draws`` is the number of GOE draws
    K (each also used with its antithetic partner; 0 for the diagonal model); ``width`` the
    quadratic network's width m when it constrains the rank (None: full width, ``m >= d``;
    the finite-width theory of :mod:`service.theory.quadratic`).
    """

    model: str
    d: int
    n: int
    weight_decay: float
    gamma: float
    noise: float
    rank: int | None
    excess_risk: float
    tau: float | None
    sigma: float | None
    zeta: float
    df: float
    support: float
    train_mse: float
    draws: int
    finite_size_note: str | None
    width: int | None = None


def _check(model: str) -> None:
    if model not in ("diagonal", "quadratic"):
        raise ValueError(f"model must be 'diagonal' or 'quadratic', got {model!r}")


@lru_cache(maxsize=512)
def _diagonal(p: SEPoint) -> diagonal.DiagonalSolution:
    return diagonal.solve(p)


@lru_cache(maxsize=128)
def _quadratic(p: SEPoint, draws: int | None, seed: int) -> quadratic.QuadraticSolution:
    if draws is not None:
        return quadratic.solve(p, draws=draws, seed=seed)
    k = quadratic.default_draws(p.d)
    sol = quadratic.solve(p, draws=k, seed=seed)
    k_sensitive = quadratic.default_draws(p.d, sensitive=True)
    if sol.df / p.n > 0.8 and k_sensitive > k:  # df/n -> 1 corner: more draws (THEORY.md 4.3)
        sol = quadratic.solve(p, draws=k_sensitive, seed=seed)
    return sol


@lru_cache(maxsize=512)
def predict(
    model: Model,
    d: int,
    n: int,
    weight_decay: float,
    gamma: float,
    noise: float,
    rank: int | None = None,
    *,
    width: int | None = None,
    draws: int | None = None,
    seed: int = 0,
) -> Prediction:
    """Solve the state evolution of ``model`` (cached per argument set).

    Parameters
    ----------
    model : {"diagonal", "quadratic"}
    d, n : int
        Input dimension and number of training samples.
    weight_decay : float
        lambda (diagonal: >= 0; quadratic: > 0).
    gamma : float
        Teacher decay exponent (THEORY.md section 1).
    noise : float
        Label-noise variance Delta.
    rank : int or None
        Teacher rank (None: d).
    width : int or None
        Quadratic only: the network's width m. The global minimum is then PSD nuclear-norm
        sensing with ``rank S <= m`` (:mod:`service.theory.quadratic`, finite width; a
        non-convex problem, the SE's replica-symmetric fixed point). None or ``m >= d``: full
        width, the convex problem (the same prediction). The diagonal model takes only None
        or d.
    draws : int or None
        Quadratic only: GOE draws K; default ``ceil((200/d)^2)``, re-solved with
        ``ceil((600/d)^2)`` when ``df/n > 0.8``. Ignored for the diagonal model.
    seed : int
        Seed of the GOE draws (quadratic only).

    Returns
    -------
    Prediction

    Raises
    ------
    ValueError
        Invalid parameters. ``ArithmeticError`` if the solver finds no fixed point.
    """
    _check(model)
    p = SEPoint(d, n, float(weight_decay), float(gamma), float(noise), rank, width)
    if model == "diagonal":
        if p.width is not None:
            raise ValueError(f"the diagonal network has d = {d} units; width {width} applies to "
                             "the quadratic model only")  # fmt: skip
        a = _diagonal(p)
        return Prediction(
            model=model, d=d, n=n, weight_decay=p.lam, gamma=p.gamma, noise=p.delta, rank=rank,
            excess_risk=a.excess_risk, tau=a.tau, sigma=None, zeta=a.zeta, df=a.df,
            support=a.df, train_mse=(1.0 - a.df / n) ** 2 * (p.delta + a.excess_risk),
            draws=0, finite_size_note=None,
        )  # fmt: skip
    b = _quadratic(p, draws, seed)
    return Prediction(
        model=model, d=d, n=n, weight_decay=p.lam, gamma=p.gamma, noise=p.delta, rank=rank,
        excess_risk=b.excess_risk, tau=None, sigma=b.sigma, zeta=b.zeta, df=b.df,
        support=b.rank, train_mse=(1.0 - b.df / n) ** 2 * (p.delta + b.excess_risk),
        draws=b.draws,
        finite_size_note=finite_size_note(
            d, b.rank, p.delta, b.df, n, b.excess_risk, width=p.width
        ),
        width=p.width,
    )  # fmt: skip


@lru_cache(maxsize=64)
def _spectrum(model: Model, p: SEPoint, draws: int | None, seed: int) -> Array:
    if model == "diagonal":
        out = diagonal.spectrum(_diagonal(p), p.d, draws=200 if draws is None else draws, seed=seed)
    else:
        out = _quadratic(p, draws, seed).spectrum()
    out.setflags(write=False)
    return out


def predicted_spectrum(pred: Prediction, *, draws: int | None = None, seed: int = 0) -> Array:
    """Predicted spectrum of the trained weights, sorted decreasing (THEORY.md 3.1, 4.5, 6).

    Diagonal: ``|theta_hat|`` profile, the average of sorted ``|soft(theta* + tau Z; zeta)|`` over
    ``draws`` (default 200) draws seeded by ``seed`` (quantiles of the predicted law when
    d > 20 000). Quadratic: the average over the GOE draws of the solve of sorted
    ``max(mu_i - zeta, 0)``, ``mu = eig(diag(lam) + sigma G)``, i.e. ``eig(W^T W)``; at a
    finite width m (``pred.width``) only the m largest are kept (rank <= m).

    ``pred`` is the configuration's :func:`predict` (solved with the same ``draws`` and
    ``seed``: the cached solve is reused).

    Returns
    -------
    ndarray, shape (d,)
        Non-negative, sorted decreasing (a fresh copy).
    """
    model: Model = "diagonal" if pred.model == "diagonal" else "quadratic"
    point = SEPoint(
        pred.d, pred.n, pred.weight_decay, pred.gamma, pred.noise, pred.rank, pred.width
    )
    return np.array(_spectrum(model, point, draws, seed), copy=True)
