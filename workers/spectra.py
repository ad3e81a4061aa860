"""Spectra of the trained weights: those of the certified minimum, with their fits, and the
raw trained values (THEORY.md section 6, PEERS.md 5.1).

What a run reports is its certified minimum (:mod:`workers.screening`): the coordinates and
eigen-directions the certificate proves zero are zero, and the fits
(:func:`service.fitting.tails.fit_tail`, :func:`~service.fitting.tails.fit_rank`) use only the
values above the certificate's resolution. The trained network's own values (the optimiser's
residue at 1e-8 to 1e-16 of the top included) are kept beside them under the kind
``<kind>_raw``, not fitted, for anyone studying the optimiser.

Only numpy is needed: callers convert torch tensors to numpy arrays first.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from service.errors import FitError
from service.fitting.tails import DEFAULT_N_BOOTSTRAP, as_vector, fit_rank, fit_tail
from service.results import RankFit, Spectrum, TailFit

Array = NDArray[np.float64]
SpectrumKind = Literal["eig_S", "sv_W", "abs_theta"]


def make_spectrum(
    kind: SpectrumKind,
    values: ArrayLike,
    *,
    rng: np.random.Generator,
    n_bootstrap: int = DEFAULT_N_BOOTSTRAP,
    resolution: float | None = None,
) -> Spectrum:
    """A :class:`Spectrum` of ``values`` with its tail and rank fits.

    Parameters
    ----------
    kind : {"eig_S", "sv_W", "abs_theta"}
    values : array_like, shape (n,)
        The spectrum in any order (stored sorted decreasing, signed values kept as they are).
    rng : numpy.random.Generator
        Bootstrap source of :func:`fit_tail` (its interval and its goodness-of-fit test).
    n_bootstrap : int, default 200
        Bootstrap replicates of the tail fit.
    resolution : float or None
        The certificate's resolution: values at or below it are not fitted.

    Returns
    -------
    Spectrum
        A fit that cannot be made (too few values above the resolution, a tail the
        goodness-of-fit test rejects, ...) leaves ``tail_fit`` / ``rank_fit`` as None and puts
        the reason in ``tail_fit_error`` / ``rank_fit_error``; small or all-zero spectra
        never raise.

    Raises
    ------
    FitError
        ``values`` contains NaN or inf (a spectrum of a diverged run is not stored).
    ValueError
        ``values`` is not one-dimensional.
    """
    arr = as_vector(values)
    desc = -np.sort(-arr)
    floor = resolution or 0.0
    tail: TailFit | None = None
    tail_err: str | None = None
    rank: RankFit | None = None
    rank_err: str | None = None
    try:
        tail = fit_tail(desc, rng=rng, n_bootstrap=n_bootstrap, floor=floor)
    except FitError as exc:
        tail_err = str(exc)
    try:
        rank = fit_rank(desc, floor=floor)
    except FitError as exc:
        rank_err = str(exc)
    return Spectrum(
        kind=kind,
        values=[float(v) for v in desc],
        resolution=resolution,
        tail_fit=tail,
        tail_fit_error=tail_err,
        rank_fit=rank,
        rank_fit_error=rank_err,
    )


def raw_spectrum(kind: SpectrumKind, values: ArrayLike) -> Spectrum:
    """The trained network's own values (kind ``<kind>_raw``), sorted decreasing, not fitted."""
    desc = -np.sort(-as_vector(values))
    why = f"raw trained values (the optimiser's residue included) are not fitted; see {kind}"
    return Spectrum(
        kind=f"{kind}_raw",  # type: ignore[arg-type]
        values=[float(v) for v in desc],
        tail_fit_error=why,
        rank_fit_error=why,
    )


def _check_square(s: Array) -> None:
    if s.ndim != 2 or s.shape[0] != s.shape[1]:
        raise ValueError(f"S must be square (d, d), got shape {s.shape}")
    if not np.all(np.isfinite(s)):
        raise FitError("S has non-finite entries")


def quadratic_spectra(
    eigenvalues: ArrayLike,
    *,
    rng: np.random.Generator,
    resolution: float | None = None,
    width: int | None = None,
    raw_s: ArrayLike | None = None,
    raw_w: ArrayLike | None = None,
) -> list[Spectrum]:
    """The spectra of a quadratic network at its certified minimum, and the raw ones.

    Parameters
    ----------
    eigenvalues : array_like, shape (d,)
        The eigenvalues of the certified S (the proven zeros exactly 0), any order.
    rng : numpy.random.Generator
        Bootstrap source (used by ``eig_S`` first, then ``sv_W``).
    resolution : float or None
        The certificate's resolution on the eigenvalues of S (``sv_W``: its square root,
        since ``|sqrt a - sqrt b| <= sqrt |a - b|``).
    width : int or None
        The network's width m (``sv_W`` has ``min(m, d)`` values; default d).
    raw_s, raw_w : array_like or None
        The trained S (d, d) and W (m, d): their spectra are added as ``eig_S_raw`` and
        ``sv_W_raw``.

    Returns
    -------
    list of Spectrum
        ``eig_S``: the d eigenvalues of the certified S by value, decreasing (a signed S keeps
        its negative eigenvalues at the end; both fits use the positive part, the one
        WeightWatchers' ESD of ``W'W`` sees for ``s = +1``). ``sv_W``: the singular values of
        the first layer at the minimum, ``sqrt(|eig_S|)`` (at a global minimum the factor is
        balanced: ``W'W`` has the eigenvalues ``|eig_S|``), decreasing. Note that the
        WeightWatchers exponent refers to the squared singular values: a tail
        ``p(s^2) ~ (s^2)^-alpha`` is ``p(s) ~ s^-(2 alpha - 1)``, so ``sv_W``'s alpha is
        ``2 alpha_WW - 1`` (the rank exponent halves instead). Then ``eig_S_raw`` and
        ``sv_W_raw`` when the raw weights are given.

    Raises
    ------
    ValueError
        Wrong shapes.
    FitError
        Non-finite entries.
    """
    eig = as_vector(eigenvalues)
    d = eig.size
    m = min(width if width is not None else d, d)
    sv = np.sqrt(np.abs(eig))
    sv = -np.sort(-sv)[:m]
    sv_res = math.sqrt(resolution) if resolution is not None else None
    out = [
        make_spectrum("eig_S", eig, rng=rng, resolution=resolution),
        make_spectrum("sv_W", sv, rng=rng, resolution=sv_res),
    ]
    if raw_s is not None:
        rs = np.asarray(raw_s, dtype=np.float64)
        _check_square(rs)
        out.append(raw_spectrum("eig_S", np.linalg.eigvalsh(0.5 * (rs + rs.T))))
    if raw_w is not None:
        rw = np.asarray(raw_w, dtype=np.float64)
        if rw.ndim != 2 or rw.shape[1] != d:
            raise ValueError(f"W must be (m, d) with d = {d}, got shape {rw.shape}")
        if not np.all(np.isfinite(rw)):
            raise FitError("W has non-finite entries")
        out.append(raw_spectrum("sv_W", np.linalg.svd(rw, compute_uv=False)))
    return out


def diagonal_spectra(
    certified: ArrayLike,
    *,
    rng: np.random.Generator,
    resolution: float | None = None,
    raw: ArrayLike | None = None,
) -> list[Spectrum]:
    """The spectrum of a diagonal network at its certified minimum (``abs_theta``) and, when
    ``raw`` (the trained ``a * w``) is given, ``abs_theta_raw``.

    ``abs_theta``: ``|theta|`` sorted decreasing -- the eigenvalues ``{w_i^2}`` of ``W'W`` at a
    balanced optimum (THEORY.md section 6); the zeros the certificate proves are kept in
    ``values`` and not fitted, nor are values at or below ``resolution``.
    """
    out = [make_spectrum("abs_theta", np.abs(as_vector(certified)), rng=rng, resolution=resolution)]
    if raw is not None:
        out.append(raw_spectrum("abs_theta", np.abs(as_vector(raw))))
    return out
