"""The ``convex`` optimizer: the networks' equivalent convex problems solved to a duality gap.

Both problems (THEORY.md section 1; workers.certificate) are a least-squares term plus a
non-smooth convex penalty,

* LASSO (diagonal net): ``P(theta) = (1/2n)||y - X theta||^2 + lam ||theta||_1``, theta (d,);
* trace-penalised sensing (quadratic net):
  ``P(S) = (1/2n) sum_mu (y_mu - <A_mu, S>)^2 + (lam/2) tr S`` over PSD S (``psd=True``),
  or ``+ (lam/2)||S||_*`` over symmetric S (``psd=False``),
  ``A_mu = x_mu x_mu' - I``, S shape (d, d).

They are solved by accelerated proximal gradient (FISTA) with the gradient-based adaptive
restart of O'Donoghue and Candès (2015) and a sufficient-decrease (backtracking) safeguard
on the step, so the iteration cannot diverge even when the Lipschitz estimate is too small.
The sensing operator is applied matrix-free (:class:`workers.operators.Sensing`): the
gradient ``(X' diag(r) X)/n - mean(r) I`` is one symmetric rank-n update, O(n d^2/2) flops;
the predictions of a proximal step come from its eigen-factors, ``((X V)^2) f - sum f`` in
O(n d k) for rank k (LASSO: from the support of theta); the D x D quadratic form
(D = d(d+1)/2) is never formed, nor any n x d temporary. The stopping rule is the relative
duality gap of workers.certificate (lasso_certificate / sensing_certificate), checked every
few iterations. All arithmetic is float64 torch on the data's device (the CPU or a GPU);
per iteration only a few scalars (objective, curvature test) reach the host.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from numpy.typing import ArrayLike
from torch import Tensor

from workers.certificate import Certificate, lasso_certificate, sensing_certificate
from workers.lanczos import top_eigenvalue
from workers.operators import Sensing

Array = Tensor
StopReason = Literal["duality_gap", "primal_target", "max_steps", "timeout"]
Refine = Callable[[Tensor], Certificate | None]
"""A better dual bound at an iterate (workers.face), or None."""

_LANCZOS_STEPS = 10
"""Lanczos steps for the Lipschitz estimate (:mod:`workers.lanczos`; stops earlier at 1e-4
relative change): a rough lower bound is enough, the backtracking raises it where the
iterates need it."""
_SAFETY = 1.05
"""The Lanczos estimate is a lower bound on L: inflate it a little."""
_BACKTRACK = 1.25
"""On a failed sufficient-decrease test: L <- this factor x max(observed curvature, L)."""
_RELAX = 0.9
"""Before each step L <- this factor x L: the curvature along the iterates (low rank, sparse)
is often far below the global L, so the step grows back to what the backtracking accepts."""
_CHECK_EVERY = 10
"""Iterations between duality-gap certificates (each costs about one iteration)."""


@dataclass(frozen=True)
class ConvexSolution:
    """Result of a convex solve.

    Attributes
    ----------
    solution
        theta, shape (d,) (LASSO), or S, shape (d, d), symmetric (sensing).
    objective
        Primal objective P at ``solution``.
    gap
        Relative duality gap (P - D)/P at ``solution`` (workers.certificate.Certificate.gap).
    residual
        Prox-gradient fixed-point residual ``||x - prox_t(x - t grad f(x))|| / t`` with t = 1/L
        (Frobenius norm for S): 0 exactly at the optimum, a gradient-norm analogue.
    iterations
        Accepted proximal-gradient steps.
    stop_reason
        "duality_gap" (gap <= tol), "primal_target" (an iterate below the caller's
        ``primal_target``), "max_steps" (max_iter reached) or "timeout" (deadline passed).
    wall_time_s
        Wall time of the solve, certificates included.
    """

    solution: Array
    residual: float
    iterations: int
    stop_reason: StopReason
    wall_time_s: float
    certificate: Certificate
    """The last certificate: P at ``solution``, the best dual bound and its point, and (its
    ``upper``) the smallest objective a refinement saw."""

    @property
    def objective(self) -> float:
        """Primal objective P at ``solution``."""
        return self.certificate.primal

    @property
    def gap(self) -> float:
        """Relative duality gap (P - D)/P at ``solution``."""
        return self.certificate.gap


@dataclass(frozen=True)
class _Composite:
    """min_x (1/2n)||y - A x||^2 + h(x), with A linear and h convex with an easy prox.

    forward: x -> A x, shape (n,); adjoint: r -> A' r / n, shape of x;
    prox: (v, t) -> (p, h(p), A p) with p = prox_{t h}(v) (A p from the prox's own structure:
    the support of a sparse theta, the eigen-factors of a low-rank S);
    certificate: (x, A x) -> duality gap.
    """

    y: Array
    forward: Callable[[Array], Array]
    adjoint: Callable[[Array], Array]
    prox: Callable[[Array, float], tuple[Array, float, Array]]
    certificate: Callable[[Array, Array], Certificate]


def _dot(a: Array, b: Array) -> float:
    return float((a * b).sum())


def _lipschitz(
    forward: Callable[[Array], Array], adjoint: Callable[[Array], Array], v0: Array
) -> float:
    """Top eigenvalue of x -> A'(A x)/n from v0 (a lower bound, :mod:`workers.lanczos`)."""
    return top_eigenvalue(lambda v: adjoint(forward(v)), v0, max_steps=_LANCZOS_STEPS)


def _fista(
    prob: _Composite,
    x0: Array,
    lipschitz: float,
    *,
    tol: float,
    max_iter: int,
    deadline: float | None,
    check_every: int,
    started: float,
    refine: Refine | None = None,
    refine_every: int = 0,
    dual_target: float | None = None,
    primal_target: float | None = None,
) -> ConvexSolution:
    """FISTA with gradient-based adaptive restart and sufficient-decrease backtracking;
    ``refine`` (every ``refine_every`` iterations, a multiple of ``check_every``) supplies a
    better dual bound at an iterate, ``dual_target`` ends the solve once the bound reaches
    it and ``primal_target`` once an iterate's objective is below it (:func:`solve_sensing`)."""
    y_obs = prob.y
    n = len(y_obs)
    lip = max(lipschitz, 1e-300)

    x = x0
    ax = prob.forward(x)
    obj_x = math.inf  # objective of x (x0 need not be feasible for the penalty)
    yv, ay = x, ax  # extrapolated point and its predictions
    t_mom = 1.0
    stop: StopReason = "max_steps"
    it = 0
    cert = prob.certificate(x, ax)
    if cert.gap <= tol or (dual_target is not None and cert.dual >= dual_target):
        stop = "duality_gap"
    while stop == "max_steps" and it < max_iter:
        if deadline is not None and time.monotonic() > deadline:
            stop = "timeout"
            break
        grad = -prob.adjoint(y_obs - ay)
        lip *= _RELAX
        while True:  # backtracking: accept when ||A(x+ - y)||^2/n <= L ||x+ - y||^2
            x_new, pen_new, ax_new = prob.prox(yv - grad / lip, 1.0 / lip)
            diff = x_new - yv
            dd = _dot(diff, diff)
            da = ax_new - ay
            curv = float(da @ da) / n
            slack = (1e-13) ** 2 * float(ax_new @ ax_new + ay @ ay) / n
            if dd == 0.0 or curv <= lip * dd + slack:
                break
            lip = max(_BACKTRACK * curv / dd, _BACKTRACK * lip)
        it += 1
        r_new = y_obs - ax_new
        obj_new = float(r_new @ r_new) / (2 * n) + pen_new
        step = x_new - x
        # O'Donoghue-Candes gradient restart (generalised gradient y - x+ against the step),
        # plus a function-value restart when the objective went up (beyond rounding).
        if _dot(yv - x_new, step) > 0.0 or obj_new - obj_x > 1e-14 * abs(obj_x):
            t_mom = 1.0
            yv, ay = x_new, ax_new
        else:
            t_next = 0.5 * (1.0 + math.sqrt(1.0 + 4.0 * t_mom * t_mom))
            beta = (t_mom - 1.0) / t_next
            yv = x_new + beta * step
            ay = ax_new + beta * (ax_new - ax)
            t_mom = t_next
        x, ax, obj_x = x_new, ax_new, obj_new
        if primal_target is not None and obj_x < primal_target:
            stop = "primal_target"
            break
        if it % check_every == 0:
            cert = prob.certificate(x, ax)
            if refine is not None and refine_every and it % refine_every == 0:
                better = refine(x)
                if better is not None:
                    cert = cert.combined(better)
            if cert.gap <= tol or (dual_target is not None and cert.dual >= dual_target):
                stop = "duality_gap"
            elif primal_target is not None and cert.best_primal < primal_target:
                stop = "primal_target"
    if stop != "duality_gap" or it % check_every != 0:
        cert = prob.certificate(x, ax)
        if stop == "max_steps" and cert.gap <= tol:
            stop = "duality_gap"
    grad = -prob.adjoint(y_obs - ax)
    p, _, _ = prob.prox(x - grad / lip, 1.0 / lip)
    dp = x - p
    residual = math.sqrt(_dot(dp, dp)) * lip
    return ConvexSolution(
        solution=x,
        residual=residual,
        iterations=it,
        stop_reason=stop,
        wall_time_s=time.perf_counter() - started,
        certificate=cert,
    )


def _every(refine_every: int, check_every: int) -> int:
    """``refine_every`` rounded up to a multiple of ``check_every`` (0 stays 0)."""
    return -(-refine_every // check_every) * check_every if refine_every > 0 else 0


def as_tensor(v: ArrayLike | Tensor, device: torch.device | None = None) -> Tensor:
    """``v`` as a float64 tensor (on ``device``, or where it is)."""
    t = v if isinstance(v, Tensor) else torch.as_tensor(np.asarray(v, dtype=np.float64))
    return t.to(dtype=torch.float64, device=device if device is not None else t.device)


def _checked(x: ArrayLike | Tensor, y: ArrayLike | Tensor, lam: float) -> tuple[Array, Array]:
    """X as a contiguous float64 (n, d) tensor, y as float64 (n,) on X's device; ValueError
    for lam < 0."""
    if lam < 0:
        raise ValueError(f"lam must be >= 0, got {lam}")
    xm = as_tensor(x).contiguous()
    return xm, as_tensor(y, xm.device)


def _soft(v: Array, z: float) -> Array:
    return torch.sign(v) * torch.clamp(v.abs() - z, min=0.0)


def solve_lasso(
    x: ArrayLike | Tensor,
    y: ArrayLike | Tensor,
    lam: float,
    *,
    tol: float = 1e-10,
    max_iter: int = 100_000,
    start: ArrayLike | Tensor | None = None,
    deadline: float | None = None,
    refine: Refine | None = None,
    refine_every: int = 0,
    dual_target: float | None = None,
    primal_target: float | None = None,
) -> ConvexSolution:
    """Solve the LASSO ``min (1/2n)||y - X theta||^2 + lam ||theta||_1``.

    Parameters
    ----------
    x
        Design matrix X, shape (n, d).
    y
        Labels, shape (n,).
    lam
        Penalty lam >= 0 (lam = 0: least squares; the gap may then never reach tol when the
        minimum is 0, and the solve ends at max_iter).
    tol
        Stop when the relative duality gap (workers.certificate.lasso_certificate) is <= tol.
    max_iter
        Maximum number of proximal-gradient steps.
    start
        Warm start theta, shape (d,); default zeros.
    deadline
        A time.monotonic() value after which the solve stops with stop_reason "timeout".
    refine, refine_every, dual_target, primal_target
        As in :func:`solve_sensing`.

    Returns
    -------
    ConvexSolution
        ``solution`` is theta, shape (d,).
    """
    started = time.perf_counter()
    xm, yv = _checked(x, y, lam)
    n, d = xm.shape
    dev = xm.device
    theta0 = (
        torch.zeros(d, dtype=torch.float64, device=dev)
        if start is None
        else as_tensor(start, dev).reshape(d).clone()
    )

    def forward(th: Array) -> Array:
        return xm @ th

    def adjoint(r: Array) -> Array:
        return (r @ xm) / n

    def prox(v: Array, t: float) -> tuple[Array, float, Array]:
        p = _soft(v, t * lam)
        support = torch.nonzero(p).squeeze(1)
        ap = xm[:, support] @ p[support] if len(support) < d // 4 else xm @ p
        return p, lam * float(p.abs().sum()), ap

    prob = _Composite(
        y=yv,
        forward=forward,
        adjoint=adjoint,
        prox=prox,
        certificate=lambda th, _pred: lasso_certificate(xm, yv, th, lam),
    )
    # L = ||X||_2^2 / n: Lanczos on X'X/n from a fixed start, slightly inflated;
    # the backtracking test in _fista corrects any underestimate.
    v0 = as_tensor(np.ones(d) + np.random.default_rng(0).standard_normal(d), dev)
    lip = _SAFETY * _lipschitz(forward, adjoint, v0)
    # With lam = 0 the certificate solves a least-squares problem (O(n d min(n, d))):
    # check it rarely enough that it costs at most ~10 % of the iterations.
    check = _CHECK_EVERY if lam > 0 else max(_CHECK_EVERY, 3 * min(n, d))
    return _fista(
        prob,
        theta0,
        lip,
        tol=tol,
        max_iter=max_iter,
        deadline=deadline,
        check_every=check,
        started=started,
        refine=refine,
        refine_every=_every(refine_every, check),
        dual_target=dual_target,
        primal_target=primal_target,
    )


def solve_sensing(
    x: ArrayLike | Tensor,
    y: ArrayLike | Tensor,
    lam: float,
    *,
    psd: bool = True,
    tol: float = 1e-10,
    max_iter: int = 100_000,
    start: ArrayLike | Tensor | None = None,
    deadline: float | None = None,
    lipschitz: float | None = None,
    op: Sensing | None = None,
    refine: Refine | None = None,
    refine_every: int = 0,
    dual_target: float | None = None,
    primal_target: float | None = None,
) -> ConvexSolution:
    """Solve trace-penalised sensing with ``A_mu = x_mu x_mu' - I``.

    ``psd=True``: ``min_{S >= 0} (1/2n) sum (y_mu - <A_mu, S>)^2 + (lam/2) tr S``
    (prox: eigenvalues soft-thresholded at t lam/2, then clipped at 0);
    ``psd=False``: ``min_S ... + (lam/2)||S||_*`` over symmetric S
    (prox: eigenvalues soft-thresholded in absolute value).

    Parameters
    ----------
    x
        Inputs, shape (n, d).
    y
        Labels, shape (n,).
    lam
        Penalty lam >= 0 (lam = 0 may end at max_iter, see solve_lasso).
    psd
        PSD-constrained trace penalty (positive second layer) or nuclear norm (signed).
    tol
        Stop when the relative duality gap (workers.certificate.sensing_certificate) is <= tol.
    max_iter
        Maximum number of proximal-gradient steps.
    start
        Warm start S, shape (d, d) (symmetrised, and projected on the PSD cone when ``psd``);
        default zeros.
    deadline
        A time.monotonic() value after which the solve stops with stop_reason "timeout".
    lipschitz
        A known estimate of the top eigenvalue of A'A/n (the backtracking corrects an
        underestimate); default: Lanczos here.
    op
        The sensing operator on ``x`` when the caller keeps one (its X'X computed once).
    refine
        A better dual bound at an iterate (the minimum on its face, workers.face), tried
        every ``refine_every`` iterations (0: never; rounded up to a certificate check).
    dual_target
        Also stop once the dual bound reaches this value (a caller certifying another
        primal needs no tighter bound; stop_reason "duality_gap").
    primal_target
        Also stop once an iterate's objective (or a refinement's upper bound) is below this
        value: a caller whose candidate can be certified only if the minimum is above it
        learns that it is not (stop_reason "primal_target").

    Returns
    -------
    ConvexSolution
        ``solution`` is S, shape (d, d), symmetric (PSD when ``psd``).
    """
    started = time.perf_counter()
    xm, yv = _checked(x, y, lam)
    d = xm.shape[1]
    dev = xm.device
    if start is None:
        sinit = torch.zeros(d, d, dtype=torch.float64, device=dev)
    else:
        sinit = as_tensor(start, dev).reshape(d, d)
        sinit = (sinit + sinit.T) / 2.0
        if psd:  # start feasible: project on the PSD cone
            w, vecs = torch.linalg.eigh(sinit)
            sinit = (vecs * w.clamp_min(0.0)) @ vecs.T
            sinit = (sinit + sinit.T) / 2.0

    op = op if op is not None else Sensing(xm)

    def prox(v: Array, t: float) -> tuple[Array, float, Array]:
        w, vecs = torch.linalg.eigh((v + v.T) / 2.0)
        z = t * lam / 2.0
        f = (w - z).clamp_min(0.0) if psd else _soft(w, z)
        keep = torch.nonzero(f).squeeze(1)
        vk, fk = vecs[:, keep], f[keep]
        s = (vk * fk) @ vk.T
        return (s + s.T) / 2.0, lam / 2.0 * float(fk.abs().sum()), op.forward_factors(vk, fk)

    prob = _Composite(
        y=yv,
        forward=op.forward,
        adjoint=op.adjoint,
        prox=prox,
        certificate=lambda s, pred: sensing_certificate(
            xm, yv, s, lam, psd, prediction=pred, adjoint=op.adjoint
        ),
    )
    # Start near the identity direction (close to the top of A'A for x x' - I) plus a
    # fixed random symmetric part so no eigen-direction is missed.
    if lipschitz is None:
        g = np.random.default_rng(0).standard_normal((d, d))
        v0 = as_tensor(np.eye(d) + (g + g.T) / (2.0 * math.sqrt(d)), dev)
        lipschitz = _SAFETY * _lipschitz(op.forward, op.adjoint, v0)
    lip = lipschitz
    return _fista(
        prob,
        sinit,
        lip,
        tol=tol,
        max_iter=max_iter,
        deadline=deadline,
        check_every=_CHECK_EVERY,
        started=started,
        refine=refine,
        refine_every=_every(refine_every, _CHECK_EVERY),
        dual_target=dual_target,
        primal_target=primal_target,
    )
