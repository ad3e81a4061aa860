"""What the certificate proves about the minimum: gap-safe screening and the resolution.

A certified candidate (relative duality gap ~1e-6) still carries the optimiser's residue:
coordinates of the diagonal net at 1e-10 to 1e-16 of the largest, eigenvalues of the quadratic
net's S at 1e-8 of the top. A support or a spectrum read off those values counts the residue.
The certificate itself says which coordinates and eigen-directions are zero at the minimum:

**Gap-safe sphere test** (Fercoq, Gramfort and Salmon 2015; Ndiaye, Fercoq, Gramfort and
Salmon 2017; the rule behind celer and skglm). Both duals here are
``D(u) = u'y/n - |u|^2/(2n)``, strongly concave with modulus 1/n, so the dual optimum u*
(the residual at the minimum) lies in the ball ``|u - u*| <= rho = sqrt(2 n G)`` around any
dual-feasible u, with ``G = P(candidate) - D(u)`` the absolute gap. Then

* LASSO (``|X'u*|_inf <= n lam``; theta*_j != 0 only where ``|x_j'u*| = n lam``): coordinate j
  is zero at the minimum when ``|x_j'u| + |x_j| rho < n lam``.
* trace-penalised sensing (``M(u) = A'(u)/n <= (lam/2) I``; the range of S* lies in the
  eigenspace of M(u*) at lam/2, or at +-lam/2 for the nuclear norm): with
  ``|M(u) - M(u*)|_op <= sqrt(2 L G) = delta`` (L >= the top eigenvalue of the sensing
  operator's quadratic form Q = A'A/n, by Lanczos) Weyl's inequality gives
  ``rank(S*) <= #{k : mu_k(M(u)) >= lam/2 - delta}`` (``|mu_k| >=`` for the nuclear norm): every
  other eigen-direction of the candidate is zero at the minimum.

The *certified solution* is the candidate with those coordinates (diagonal) or its smallest
eigen-directions beyond that rank (quadratic) set to zero; its support is its number of
non-zeros. For a convex solver's exact-zero solution the same test only confirms its zeros.

**Resolution.** The objective restricted to the face the test leaves (the unscreened
coordinates; the span of the candidate's kept eigenvectors) is mu-strongly convex with
``mu`` the smallest eigenvalue of the data's Gram matrix on that face (``X_A'X_A/n``; the
restricted ``Q``), when the face has fewer dimensions than samples. Then
``|certified - minimum|_2 <= eps = sqrt(2 G_c / mu)``, ``G_c`` the gap of the certified solution,
so every value of the certified solution is within eps of the minimum's: a value at or below
eps may be zero there, one above it is not. (Exact for the LASSO; for sensing it assumes the
minimum's range is the span of the kept eigenvectors, which the test makes of the right
dimension.) Fits of the spectrum use only values above eps (:mod:`workers.spectra`).

All arithmetic is float64 torch on the data's device; the certified values go to the host
once, at the end.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from numpy.typing import NDArray
from torch import Tensor

from workers.certificate import Certificate, lasso_certificate, sensing_certificate
from workers.lanczos import top_eigenvalue
from workers.operators import Sensing

Array = NDArray[np.float64]

METHOD = "gap-safe sphere test (Fercoq, Gramfort and Salmon 2015)"
"""The named estimator of ``support``: what ``RunMetrics.support_method`` says."""
SAFETY = 1.05
"""The Lanczos estimate of L is a lower bound: inflated by this factor."""
LANCZOS_RTOL = 1e-3
"""The Lanczos estimate stops at this relative change (the radius goes as sqrt(L)). Measured
on the d = 200, n = 8,000 quadratic run: 16 applications of Q, 0.13 % below the top
eigenvalue (60 steps), where 25 steps of power iteration ended 2.2 % below it."""
FACE_FLOPS = 2e9
"""The sensing face's Gram matrix (n x D_r^2 flops) is formed only below this cost; above
it the resolution is not computed (None) and the fits use every kept eigenvalue."""


@dataclass(frozen=True)
class CertifiedSolution:
    """The candidate with every coordinate / eigen-direction proven zero set to zero."""

    solution: Tensor
    """theta (d,) or S (d, d), on the data's device."""
    values: Array
    """|theta| (diagonal) or |eigenvalues of S| (quadratic), decreasing; the zeros exact."""
    support: int
    """Non-zero coefficients / rank of the certified solution."""
    penalty_norm: float
    """l1 norm of theta / nuclear norm of S."""
    screened: int
    """Coordinates / eigen-directions the test proves zero at the minimum."""
    resolution: float | None
    """eps of the module docstring (None: not computed, the face is too large or flat)."""
    gap: float
    """Relative duality gap of the certified solution."""
    sphere_gap: float = 0.0
    """The relative gap that set the sphere's radius (what a better dual point could shrink)."""
    eigenvalues: Array | None = None
    """Quadratic: the eigenvalues of S by value, decreasing, the proven zeros exact (an
    eigen-decomposition of the reconstructed S would give them back as +-1e-17)."""

    @property
    def ambiguous(self) -> int:
        """Kept values the resolution cannot tell from zero (all small ones when the
        resolution is unknown: below 1e-6 of the largest)."""
        kept = self.values[: self.support]
        if kept.size == 0:
            return 0
        floor = self.resolution if self.resolution is not None else 1e-6 * float(kept[0])
        return int(np.count_nonzero(np.abs(kept) <= floor))


def _pos_or_none(mu: float, gap_abs: float) -> float | None:
    if not mu > 0.0 or not math.isfinite(mu):
        return None
    return math.sqrt(2.0 * max(gap_abs, 0.0) / mu)


def _sphere(certs: Sequence[Certificate]) -> tuple[Tensor, float, float]:
    """The best dual point u of ``certs``, the absolute gap ``G = P_best - D(u)`` that bounds
    ``|u - u*|^2 <= 2 n G`` (P_best: the smallest primal value, an upper bound on P*), and
    D(u) (a lower bound on P*)."""
    best = max((c for c in certs if c.point is not None), key=lambda c: c.dual)
    assert best.point is not None
    primal = min(c.best_primal for c in certs)
    return best.point, max(primal - best.dual, 0.0), best.dual


def screen_lasso(
    x: Tensor, y: Tensor, theta: Tensor, lam: float, certs: Sequence[Certificate] = ()
) -> CertifiedSolution:
    """Gap-safe screening of a LASSO candidate (module docstring). ``certs``: certificates
    known for this problem (of the candidate, of a warm-started solve): the best dual point
    centres the sphere, the smallest primal value bounds its radius; the candidate's own
    residual-based certificate is always among them."""
    n = y.shape[0]
    own = lasso_certificate(x, y, theta, lam)
    u, gap_abs, best_dual = _sphere([own, *certs])
    sphere_gap = gap_abs / max(abs(own.primal), 1e-300)
    rho = math.sqrt(2.0 * n * gap_abs)
    col_norms = torch.sqrt((x * x).sum(dim=0))
    zero = (x.T @ u).abs() + col_norms * rho < n * lam * (1.0 - 1e-12)
    sol = torch.where(zero, torch.zeros_like(theta), theta)
    active = torch.nonzero(sol).squeeze(1)
    primal = lasso_certificate(x, y, sol, lam).primal
    resolution = None
    if 0 < active.numel() < n:
        xa = x[:, active]
        mu = float(torch.linalg.eigvalsh(xa.T @ xa / n)[0])
        resolution = _pos_or_none(mu, primal - best_dual)
    values = sol.abs().cpu().numpy()
    return CertifiedSolution(
        solution=sol,
        values=-np.sort(-values),
        support=int(active.numel()),
        penalty_norm=float(values.sum()),
        screened=int(zero.sum()),
        resolution=resolution,
        gap=Certificate(primal, best_dual).gap,
        sphere_gap=sphere_gap,
    )


def sensing_lipschitz(op: Sensing, *, seed: int = 0) -> float:
    """An upper estimate of the top eigenvalue of Q = A'A/n (Lanczos, :mod:`workers.lanczos`,
    x SAFETY), from near the identity direction plus a fixed random symmetric part."""
    d = op.d
    g = np.random.default_rng(seed).standard_normal((d, d))
    v = torch.as_tensor(np.eye(d) + (g + g.T) / (2.0 * math.sqrt(d)), device=op.x.device)
    return SAFETY * top_eigenvalue(lambda s: op.adjoint(op.forward(s)), v, rtol=LANCZOS_RTOL)


def _face_curvature(x: Tensor, v: Tensor) -> float | None:
    """Smallest eigenvalue of Q restricted to {V X V'} (X symmetric), None when too costly
    or when the face has at least as many dimensions as there are samples."""
    n, r = x.shape[0], v.shape[1]
    dim = r * (r + 1) // 2
    if r == 0 or dim >= n or n * dim * dim > FACE_FLOPS:
        return None
    iu, ju = torch.triu_indices(r, r, device=x.device)
    weight = torch.where(iu == ju, 1.0, math.sqrt(2.0)).to(x.dtype)
    eye = (iu == ju).to(x.dtype)
    gram = torch.zeros(dim, dim, dtype=x.dtype, device=x.device)
    for i in range(0, n, 8192):
        z = x[i : i + 8192] @ v  # (c, r)
        feats = z[:, iu] * z[:, ju] * weight - eye  # svec(z z' - I), orthonormal coordinates
        gram += feats.T @ feats
    return float(torch.linalg.eigvalsh(gram / n)[0])


def screen_sensing(
    x: Tensor,
    y: Tensor,
    s: Tensor,
    lam: float,
    psd: bool,
    certs: Sequence[Certificate] = (),
    *,
    lipschitz: float | None = None,
    op: Sensing | None = None,
) -> CertifiedSolution:
    """Gap-safe screening of a sensing candidate S (module docstring). ``certs``: as in
    :func:`screen_lasso`; ``lipschitz``: a known upper bound on the top eigenvalue of Q
    (else estimated here); ``op``: the sensing operator on ``x`` when the caller keeps one."""
    op = op if op is not None else Sensing(x)
    s = (s + s.T) / 2.0
    own = sensing_certificate(x, y, s, lam, psd, adjoint=op.adjoint)
    ev, vec = torch.linalg.eigh(s)
    order = torch.argsort(-(ev if psd else ev.abs()), stable=True)
    ev, vec = ev[order], vec[:, order]
    d = ev.shape[0]
    keep = d
    usable = [c for c in (own, *certs) if math.isfinite(c.primal)]
    best_dual = -math.inf
    sphere_gap = math.inf
    if usable and any(c.point is not None for c in usable):
        u, gap_abs, best_dual = _sphere(usable)
        sphere_gap = gap_abs / max(abs(own.primal), 1e-300)
        mev = torch.linalg.eigvalsh(op.adjoint(u))
        big_l = lipschitz if lipschitz is not None else sensing_lipschitz(op)
        delta = math.sqrt(2.0 * big_l * gap_abs)
        score = mev if psd else mev.abs()
        keep = int((score >= lam / 2.0 * (1.0 - 1e-12) - delta).sum())
    kept = ev[:keep].clamp_min(0.0) if psd else ev[:keep].clone()
    vk = vec[:, :keep]
    sol = (vk * kept) @ vk.T
    sol = (sol + sol.T) / 2.0
    kept_host = kept.cpu().numpy()
    signed = np.concatenate([kept_host, np.zeros(d - keep)])
    values = -np.sort(-np.abs(signed))
    c_own = sensing_certificate(x, y, sol, lam, psd, adjoint=op.adjoint)
    best_dual = max(best_dual, c_own.dual)
    resolution = None
    if math.isfinite(c_own.primal):
        mu = _face_curvature(x, vk[:, kept != 0])
        if mu is not None:
            resolution = _pos_or_none(mu, c_own.primal - best_dual)
    return CertifiedSolution(
        solution=sol,
        values=values,
        support=int(np.count_nonzero(kept_host)),
        penalty_norm=float(np.abs(kept_host).sum()),
        screened=d - keep,
        resolution=resolution,
        gap=Certificate(c_own.primal, best_dual).gap,
        sphere_gap=sphere_gap,
        eigenvalues=-np.sort(-signed),
    )
