"""Dual points from the minimum on a face: the convex problem restricted to a candidate's
support, solved exactly, gives the residual that is the dual optimum once the face is right.

The free dual point of :mod:`workers.certificate` is the candidate's own residual, projected
and scaled into the feasible set: its gap is first order in the candidate's distance to the
minimum. Near the minimum the candidate already names the face the minimum lies on (the
LASSO's support and signs; the span of S's leading eigenvectors), and on that face both
problems are smooth and, with fewer face dimensions than samples, strongly convex:

* LASSO on a support A with signs s: ``min (1/2n)|y - X_A t|^2 + lam s't``, the normal
  equations ``(X_A'X_A/n) t = X_A'y/n - lam s`` (a Cholesky of the k x k Gram matrix);
* trace-penalised sensing on the span of V (d, k) with signs J (+1 for the PSD problem):
  ``min_M (1/2n)|y - A(V M V')|^2 + (lam/2) tr(J M)``, a least-squares problem in the
  k(k+1)/2 entries of M solved by conjugate gradients with the sensing operator of the face's
  own design ``Z = X V`` (:class:`workers.operators.Sensing`: O(n k^2) an application
  instead of the full operator's O(n d^2)).

The face's minimiser, with its coordinates / eigenvalues of the wrong sign dropped and the face
solved again (an active set, at most :data:`ROUNDS` times), is a candidate whose residual is
the residual at the minimum up to the face's error; its certificate (the same projected and
scaled residual, :mod:`workers.certificate`) is therefore dual feasible whatever the face, and
its gap second order in the candidate's error when the face is right. Measured at the
certificate checks of a quadratic run (d = 200, n = 8,000, lam = 0.01, float64): network
free gaps 7.4e-4, 2.8e-4, 1.1e-5, 8.2e-7 gave face gaps (the network's primal against the face
dual) 1.2e-5, 1.2e-6, 9.7e-8, 3.3e-9, in 0.3 s each (about 35 CG iterations at k = 74, to a
relative residual of 1e-7).

Used by :meth:`workers.problems.Problem.certificate` (before and during the warm convex
solve) and by the screening's sharpening (:meth:`workers.problems.Problem.certified`).
Every certificate here is a valid bound whatever the face: a wrong face only gives a looser
one.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from workers.certificate import Certificate, lasso_certificate, sensing_certificate
from workers.operators import Sensing

FACE_THRESHOLD = 1e-6
"""Eigen-directions of S (coordinates of theta) at least this fraction of the largest span
the face; smaller ones are the optimiser's residue."""
ROUNDS = 4
"""At most this many active-set rounds (face solved, wrong signs dropped, solved again)."""
CG_TOL = 1e-5
"""The face's conjugate gradients stop at this relative residual (the face gradient, against
the start's, which is already near the face's minimum). Measured at the faces of quadratic
runs (d = 150-200, n = 6,000-12,000, lam = 0.005-0.02, face gaps 2.8e-4 to 6e-8): the duals
at 1e-5 within 1e-8 of the primal of those at 1e-7 (as often above as below), each face
0.08-0.29 s against 0.10-0.38 s; at 1e-10 the duals were the same to three digits, at 40 %
more iterations than 1e-7."""
CG_MAX_ITERATIONS = 200
MAX_FACE_FRACTION = 0.5
"""A face with more dimensions than this fraction of the samples is not solved (its
least-squares problem is then ill-conditioned or singular: the free dual is used instead)."""
MAX_RANK_FRACTION = 0.5
"""A sensing face of rank above this fraction of d is not solved: a conjugate-gradient step
on it then costs about what a step of the full solver does, and it needs more of them
(d = 60, n = 7,200, rank 59: two faces 0.32 s where the whole warm solve took 0.23 s; the
run's certificate 0.95 s against 0.69 s without faces). At d = 200, rank 74 the face is
four times cheaper a step than the full operator."""


def _on_face(score: Tensor) -> Tensor:
    """Which coordinates / eigen-directions span the face: a ``score`` (|theta_i|; an
    eigenvalue, or its absolute value for the nuclear norm) at least FACE_THRESHOLD of the
    largest; none when no score is positive."""
    top = float(score.max()) if score.numel() else 0.0
    if top <= 0.0:
        return torch.zeros_like(score, dtype=torch.bool)
    return score > FACE_THRESHOLD * top


def face_size(solution: Tensor, psd: bool = True) -> int:
    """How many coordinates (theta, 1-D) or eigen-directions (S, 2-D; ``psd``: only the
    positive ones) span the face that ``solution`` names (:func:`_on_face`)."""
    if solution.ndim == 1:
        return int(_on_face(solution.abs()).sum())
    ev = torch.linalg.eigvalsh((solution + solution.T) / 2.0)
    return int(_on_face(ev if psd else ev.abs()).sum())


def lasso_face_certificate(x: Tensor, y: Tensor, theta: Tensor, lam: float) -> Certificate | None:
    """The certificate of the LASSO's minimum on the support and signs of ``theta`` (module
    docstring), or None when there is no face to solve (lam = 0, an empty or large support)."""
    n = y.shape[0]
    on_face = _on_face(theta.abs())
    if lam <= 0.0 or not bool(on_face.any()):
        return None
    active = torch.nonzero(on_face).squeeze(1)
    signs = torch.sign(theta[active])
    best: Certificate | None = None
    for _ in range(ROUNDS):
        k = active.numel()
        if k == 0 or k > MAX_FACE_FRACTION * n:
            break
        xa = x[:, active]
        gram = xa.T @ xa / n
        chol, info = torch.linalg.cholesky_ex(gram)
        if int(info) != 0:
            break
        rhs = (xa.T @ y / n - lam * signs).unsqueeze(1)
        t = torch.cholesky_solve(rhs, chol).squeeze(1)
        face = torch.zeros_like(theta)
        agree = torch.sign(t) == signs
        face[active[agree]] = t[agree]
        cert = lasso_certificate(x, y, face, lam)
        if best is None or cert.dual > best.dual:
            best = cert
        if bool(agree.all()):
            break
        active, signs = active[agree], signs[agree]
    return best


def sensing_face_certificate(
    x: Tensor,
    y: Tensor,
    s: Tensor,
    lam: float,
    psd: bool,
    *,
    adjoint: Callable[[Tensor], Tensor],
) -> Certificate | None:
    """The certificate of the sensing problem's minimum on the span of the leading
    eigenvectors of ``s`` (module docstring), or None when there is no face to solve."""
    n = y.shape[0]
    ev, vec = torch.linalg.eigh((s + s.T) / 2.0)
    keep = _on_face(ev if psd else ev.abs())
    if lam <= 0.0 or not bool(keep.any()):
        return None
    v, signs = vec[:, keep], torch.sign(ev[keep])
    start = torch.diag(ev[keep])
    best: Certificate | None = None
    for _ in range(ROUNDS):
        k = v.shape[1]
        if k == 0 or k * (k + 1) / 2 > MAX_FACE_FRACTION * n or k > MAX_RANK_FRACTION * s.shape[0]:
            break
        on_face = Sensing(x @ v)
        w, u = torch.linalg.eigh(_face_minimum(on_face, y, lam, signs, start))
        if psd:
            right = w > 0
            f = w.clamp_min(0.0)
        else:  # the nuclear norm's face: an eigenvalue keeps the sign its direction had
            right = torch.ones_like(w, dtype=torch.bool)
            f = w
        vu = v @ u
        face = (vu * f) @ vu.T
        cert = sensing_certificate(
            x, y, (face + face.T) / 2.0, lam, psd,
            prediction=on_face.forward_factors(u, f), adjoint=adjoint,
        )  # fmt: skip
        if best is None or cert.dual > best.dual:
            best = cert
        if bool(right.all()):
            break
        v, signs, start = vu[:, right], signs.new_ones(int(right.sum())), torch.diag(w[right])
    return best


def _face_minimum(face: Sensing, y: Tensor, lam: float, signs: Tensor, start: Tensor) -> Tensor:
    """argmin_M (1/2n)|y - (z'Mz - tr M)|^2 + (lam/2) tr(diag(signs) M) over symmetric k x k M,
    with ``face`` the sensing operator on ``Z = X V`` (n, k), by conjugate gradients from
    ``start``."""
    m = start.clone()
    res = face.adjoint(y - face.forward(m)) - (lam / 2.0) * torch.diag(signs)  # -gradient
    p = res.clone()
    rs = float((res * res).sum())
    stop = CG_TOL * math.sqrt(rs)
    for _ in range(CG_MAX_ITERATIONS):
        if math.sqrt(rs) <= stop or rs == 0.0:
            break
        qp = face.adjoint(face.forward(p))
        curvature = float((p * qp).sum())
        if curvature <= 0.0:
            break
        a = rs / curvature
        m += a * p
        res -= a * qp
        rs_new = float((res * res).sum())
        p = res + (rs_new / rs) * p
        rs = rs_new
    return (m + m.T) / 2.0
