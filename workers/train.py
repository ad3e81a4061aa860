"""Training the networks' own parameters to the global minimum of their objective.

:func:`train` runs full-batch ``gd``, ``adam`` or ``lbfgs`` (``cfg.training.optimizer``; the
``convex`` optimizer lives in :mod:`workers.convex` and is refused here with ValueError) on

    F(params) = (1/2n) sum (y - f(x))^2 + (lam/2) ||params||^2,      lam = cfg.weight_decay,

starting from i.i.d. N(0, init_scale^2) parameters (:func:`workers.models.build_model`).
:func:`certificate` then evaluates the duality gap of the equivalent convex problem at the
trained parameters, which certifies (or not) global optimality.

Optimizers
----------
* ``gd`` with ``cfg.training.lr`` unset: gradient descent with an Armijo backtracking line
  search, ``F(p - t g) <= F(p) - 1e-4 t |g|^2 + 8 eps |F(p)|`` (the last term tolerates
  rounding of F at the precision floor); a rejected trial halves t, an accepted step
  multiplies the next trial by 1.25. The first trial is t = 1. If 60 halvings in a row fail
  (only possible once F is flat to rounding), the run stops with ``"objective"``.
* ``gd`` with ``lr`` set: plain ``p <- p - lr g``, no safeguard (a far too large lr diverges,
  which is detected, see below).
* ``adam``: ``torch.optim.Adam`` with lr = ``cfg.training.lr`` or :data:`ADAM_DEFAULT_LR`;
  the lr is multiplied by :data:`ADAM_DECAY` whenever the objective increases.
* ``lbfgs``: ``torch.optim.LBFGS(line_search_fn="strong_wolfe", history_size=100)``; one
  step = one L-BFGS iteration (``max_iter=1``; its history persists across steps).

Polishing (``lbfgs`` and backtracking ``gd``). Near the optimum F is flat to rounding
(~1e-16 relative) long before the duality gap is small: the gap is first order in the
stationarity error (about ``|g| / lam`` for the quadratic net), F only second order. So a
value-based line search stalls at ``|g| ~ 1e-9`` and a gap ~1e-7. When the objective rule
(3. below) first fires, these two optimizers switch to a polishing phase instead of
stopping: L-BFGS takes unit quasi-Newton steps (same history, no line search), backtracking
GD stops growing its step and halves it whenever |g| does not improve. Polishing keeps the
iterate with the smallest |g|, and ends with ``"objective"`` (that iterate restored) when |g|
has not improved for 10 steps or F rises by more than ``max(1e-12, 100 eps)`` relative; the
gradient rule, max_steps and timeout still apply (with the best iterate restored). This
takes the relative duality gap from ~1e-7 to 1e-9..1e-11 in float64 (tests/workers/test_train.py).

Step ``k`` is counted in parameter updates; the objective ``F_k`` and its gradient ``g_k`` are
evaluated at the parameters after ``k`` updates (evaluations are cached, so an L-BFGS line
search evaluation is never recomputed).

Stop rules (checked in this order at every k = 0, 1, ...)
-------------------------------------------------------
1. ``"diverged"``: ``F_k`` or ``g_k`` not finite. The parameters are restored to the last
   finite iterate, and the outcome's objective / train_loss / grad_norm are *that* iterate's
   (NaN only when even the initial point is not finite); ``error`` names the step and lr.
2. ``"gradient"``: ``|g_k| <= sqrt(tol) * max(1, |F_k|)``, tol = ``cfg.training.tol``, *and*,
   when a ``certify(model)`` callback is given, it confirms the global minimum (the caller's
   duality-gap certificate, :mod:`workers.certify`). A small gradient without a certificate
   is a plateau near a saddle (directions still growing from the small initialisation):
   training goes on and asks again after 10, 20, 40, ... (at most 640) steps.
3. ``"objective"``: ``|F_k - F_{k-1}| / max(|F_k|, 1e-300) < tol_F`` for 10 consecutive steps
   (with a ``certify`` callback: only when it confirms the minimum, asked with the same
   doubling waits as in 2.; the polishing phase below is then not used),
   with ``tol_F = max(tol, 10 * machine epsilon of the dtype)`` (a relative change below that
   is rounding noise); for lbfgs / backtracking gd this starts the polishing phase above.
   Rules 2 and 3 only count at points with ``F_k <= F(0) = |y|^2/(2n)`` (the objective at
   zero parameters bounds the global minimum), so a blow-up with a huge but finite F is
   never mistaken for convergence by the *relative* gradient rule.
4. ``"max_steps"``: k == ``cfg.training.max_steps``.
5. ``"timeout"``: the wall time since the start of :func:`train` exceeds
   ``cfg.training.timeout_s`` (checked every step); ``error`` says so.

Tolerance advice: the default tol = 1e-8 stops at ``|g| <= 1e-4``, where the relative duality
gap is typically 1e-2..1e-3; a certified global minimum (gap <= 1e-8) needs tol ~1e-20..1e-24
(then the gradient rule means ``|g| <= 1e-10..1e-12``) and polishing.

Curve: ``curve_every > 0`` records ``(k, train_loss_k)`` for every k divisible by it and at the
final step; the caller adds the excess risk (or uses ``on_step(k, F_k, model)``, called after
every finite evaluation, to measure anything else at any step).

Device: ``device`` argument, else ``cfg.training.device``: ``"auto"`` = cuda if available
else cpu; ``"cuda"`` without CUDA raises RuntimeError. The data is moved to the device once.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor

from service.spec import RunConfig
from workers.data import Dataset
from workers.models import DiagonalNet, QuadraticNet, TwoLayerNet, build_model
from workers.objectives import Certificate, lasso_certificate, sensing_certificate

TrainStopReason = Literal["gradient", "objective", "max_steps", "diverged", "timeout"]

ADAM_DEFAULT_LR = 1e-2
"""Adam's learning rate when ``cfg.training.lr`` is unset."""
ADAM_DECAY = 0.5
"""Adam's lr is multiplied by this whenever the objective increases."""
ARMIJO_C = 1e-4
ARMIJO_GROW = 1.25
ARMIJO_SHRINK = 0.5
ARMIJO_MAX_HALVINGS = 60
OBJECTIVE_PATIENCE = 10
LBFGS_HISTORY = 100
CERTIFY_FIRST_WAIT = 10
"""Steps to wait before asking ``certify`` again after it refused (doubling each time)."""
CERTIFY_MAX_WAIT = 640
POLISH_SLACK = 1e-12
"""Polishing stops (best iterate kept) if F rises by more than this, relative."""


@dataclass
class TrainOutcome:
    """Result of :func:`train`; metrics are float64 Python floats, never NaN unless the
    initial point itself was not finite (then ``stop_reason == "diverged"``)."""

    model: TwoLayerNet
    steps: int
    stop_reason: TrainStopReason
    objective: float
    train_loss: float
    """(1/n) sum (y - f)^2."""
    grad_norm: float
    wall_time_s: float
    device: str
    error: str | None = None
    curve: list[tuple[int, float]] = field(default_factory=list)
    """(step, train_loss) every ``curve_every`` steps and at the end."""
    evaluations: int = 0
    """Objective evaluations (forward passes) spent, line searches included."""


def resolve_device(name: str) -> torch.device:
    """``auto`` -> cuda if available else cpu; ``cuda`` without CUDA -> RuntimeError."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("training.device is 'cuda' but CUDA is not available on this worker")
    return torch.device(name)


def torch_dtype(name: str) -> torch.dtype:
    """float32 | float64 -> torch dtype."""
    if name == "float32":
        return torch.float32
    if name == "float64":
        return torch.float64
    raise ValueError(f"unknown dtype {name!r}")


class _Evaluator:
    """F, (1/n)|r|^2 and grad F at the current parameters, cached on the parameters' values
    (an O(#params) comparison, negligible next to the O(n #params) evaluation)."""

    def __init__(self, model: TwoLayerNet, x: Tensor, y: Tensor, lam: float) -> None:
        self.model = model
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.x, self.y, self.lam = x, y, lam
        self._key: list[Tensor] | None = None
        self.value = math.nan
        self.mse = math.nan
        self.grad_norm = math.nan
        self.evaluations = 0

    def _cached(self) -> bool:
        if self._key is None:
            return False
        return all(torch.equal(p.detach(), q) for p, q in zip(self.params, self._key, strict=True))

    def graph(self) -> tuple[Tensor, Tensor]:
        """Objective and mse with an autograd graph (no backward yet)."""
        self.evaluations += 1
        with torch.enable_grad():
            return self.model.losses(self.x, self.y, self.lam)

    def commit(self, obj: Tensor, mse: Tensor) -> float:
        """Backward of a :meth:`graph` result at the *current* parameters; caches it."""
        for p in self.params:
            p.grad = None
        torch.autograd.backward(obj)
        self.value = float(obj.detach())
        self.mse = float(mse.detach())
        sq = sum((p.grad.detach() ** 2).sum() for p in self.params if p.grad is not None)
        self.grad_norm = math.sqrt(float(sq))
        self._key = [p.detach().clone() for p in self.params]
        return self.value

    def __call__(self) -> float:
        """Evaluate at the current parameters (p.grad filled); cached."""
        if self._cached():
            return self.value
        return self.commit(*self.graph())


def train(
    cfg: RunConfig,
    data: Dataset,
    *,
    device: torch.device | None = None,
    on_step: Callable[[int, float, TwoLayerNet], None] | None = None,
    curve_every: int = 0,
    certify: Callable[[TwoLayerNet], bool] | None = None,
) -> TrainOutcome:
    """Train the network of ``cfg`` on ``data`` (see the module docstring for the rules)."""
    tr = cfg.training
    if tr.optimizer == "convex":
        raise ValueError("optimizer 'convex' is not a network optimizer: use workers.convex")
    start = time.monotonic()
    dev = device if device is not None else resolve_device(tr.device)
    dtype = torch_dtype(tr.dtype)
    x = torch.as_tensor(data.x, dtype=torch.float64).to(dtype=dtype, device=dev)
    y = torch.as_tensor(data.y, dtype=torch.float64).to(dtype=dtype, device=dev)
    model = build_model(cfg, dev, dtype)
    lam = float(cfg.weight_decay)
    ev = _Evaluator(model, x, y, lam)
    params = ev.params
    tol_f = max(tr.tol, 10.0 * torch.finfo(dtype).eps)
    grad_factor = math.sqrt(tr.tol)
    polish_slack = max(POLISH_SLACK, 100.0 * torch.finfo(dtype).eps)
    # F at zero parameters bounds the global minimum: no point above it has converged.
    f_zero = float(data.y @ data.y) / (2 * len(data.y))
    f_cap = f_zero * (1.0 + 1e-6) + 1e-300

    lbfgs: torch.optim.LBFGS | None = None
    adam: torch.optim.Adam | None = None
    if tr.optimizer == "lbfgs":
        lbfgs = torch.optim.LBFGS(
            params,
            lr=1.0,
            max_iter=1,
            max_eval=25,
            tolerance_grad=0.0,
            tolerance_change=0.0,
            history_size=LBFGS_HISTORY,
            line_search_fn="strong_wolfe",
        )
    elif tr.optimizer == "adam":
        adam = torch.optim.Adam(params, lr=tr.lr if tr.lr is not None else ADAM_DEFAULT_LR)
    step_size = tr.lr if tr.lr is not None else 1.0  # gd: fixed lr, or the next Armijo trial
    armijo = tr.optimizer == "gd" and tr.lr is None

    def current_lr() -> float:
        if adam is not None:
            return float(adam.param_groups[0]["lr"])
        return step_size

    curve: list[tuple[int, float]] = []
    last_good = [p.detach().clone() for p in params]
    good: tuple[float, float, float] | None = None  # (objective, mse, grad_norm) of last_good
    prev_f: float | None = None
    calm = 0
    polishing = False  # lbfgs / backtracking gd, once F is flat to rounding (see docstring)
    best = [p.detach().clone() for p in params]
    best_metrics = (math.nan, math.nan, math.inf)
    f_ref = math.inf
    stale = 0
    k = 0
    next_certify = 0
    certify_wait = CERTIFY_FIRST_WAIT // 2
    reason: TrainStopReason
    error: str | None = None

    def restore(snapshot: list[Tensor]) -> None:
        with torch.no_grad():
            for p, q in zip(params, snapshot, strict=True):
                p.copy_(q)

    while True:
        f = ev()
        finite = math.isfinite(f) and math.isfinite(ev.grad_norm) and math.isfinite(ev.mse)
        if polishing and (not finite or f > f_ref + polish_slack * abs(f_ref)):
            restore(best)
            good = best_metrics
            reason = "objective"
            break
        if not finite:
            reason = "diverged"
            error = (
                f"diverged at step {k}: non-finite objective or gradient "
                f"(optimizer {tr.optimizer}, lr {current_lr():.3g})"
            )
            restore(last_good)
            break
        with torch.no_grad():
            for p, q in zip(params, last_good, strict=True):
                q.copy_(p)
        good = (f, ev.mse, ev.grad_norm)
        if curve_every > 0 and k % curve_every == 0:
            curve.append((k, ev.mse))
        if on_step is not None:
            on_step(k, f, model)
        if f <= f_cap and ev.grad_norm <= grad_factor * max(1.0, abs(f)) and k >= next_certify:
            if certify is None or certify(model):
                reason = "gradient"
                break
            # A small gradient but no certificate: a plateau near a saddle (directions still
            # growing from the small init). Keep going; ask again later (doubling waits).
            certify_wait = min(2 * certify_wait, CERTIFY_MAX_WAIT)
            next_certify = k + certify_wait
        if polishing:
            if ev.grad_norm < best_metrics[2]:
                with torch.no_grad():
                    for p, q in zip(params, best, strict=True):
                        q.copy_(p)
                best_metrics = good
                stale = 0
            else:
                stale += 1
                step_size *= ARMIJO_SHRINK  # gd: damp an oscillation at the edge of stability
                if stale >= OBJECTIVE_PATIENCE:
                    restore(best)
                    good = best_metrics
                    reason = "objective"
                    break
        elif prev_f is not None:
            flat = abs(f - prev_f) / max(abs(f), 1e-300) < tol_f
            calm = calm + 1 if flat and f <= f_cap else 0
            if calm >= OBJECTIVE_PATIENCE and certify is not None:
                # Flat objective: stop only on a certificate; slow progress (coordinates near
                # the threshold still growing) is not a minimum. Ask again later if refused.
                calm = 0
                if k >= next_certify:
                    if certify(model):
                        reason = "objective"
                        break
                    certify_wait = min(2 * certify_wait, CERTIFY_MAX_WAIT)
                    next_certify = k + certify_wait
            elif calm >= OBJECTIVE_PATIENCE:
                if lbfgs is None and not armijo:
                    reason = "objective"
                    break
                polishing = True
                if lbfgs is not None:
                    lbfgs.param_groups[0]["line_search_fn"] = None
                with torch.no_grad():
                    for p, q in zip(params, best, strict=True):
                        q.copy_(p)
                best_metrics = good
                f_ref = f
        if adam is not None and prev_f is not None and f > prev_f:
            for group in adam.param_groups:
                group["lr"] *= ADAM_DECAY
        prev_f = f
        if k >= tr.max_steps:
            if polishing:
                restore(best)
                good = best_metrics
            reason = "max_steps"
            break
        if tr.timeout_s is not None and time.monotonic() - start > tr.timeout_s:
            if polishing:
                restore(best)
                good = best_metrics
            reason = "timeout"
            elapsed = time.monotonic() - start
            error = f"wall time {elapsed:.3f} s exceeded timeout_s={tr.timeout_s} at step {k}"
            break

        # ---- one update
        if lbfgs is not None:
            lbfgs.step(ev)  # type: ignore[no-untyped-call]
        elif adam is not None:
            adam.step()  # p.grad holds grad F_k (ev() just ran or was cached)
        elif tr.lr is not None:
            with torch.no_grad():
                for p in params:
                    assert p.grad is not None
                    p.sub_(tr.lr * p.grad)
        else:
            accepted, step_size = _armijo_step(ev, f, step_size, grow=not polishing)
            if not accepted:
                if polishing:
                    restore(best)
                    good = best_metrics
                reason = "objective"
                break
        k += 1

    if curve_every > 0 and (not curve or curve[-1][0] != k) and good is not None:
        curve.append((k, good[1]))
    objective, mse, gnorm = good if good is not None else (math.nan, math.nan, math.nan)
    return TrainOutcome(
        model=model,
        steps=k,
        stop_reason=reason,
        objective=objective,
        train_loss=mse,
        grad_norm=gnorm,
        wall_time_s=time.monotonic() - start,
        device=str(dev),
        error=error,
        curve=curve,
        evaluations=ev.evaluations,
    )


def _armijo_step(ev: _Evaluator, f: float, t: float, *, grow: bool) -> tuple[bool, float]:
    """One backtracking step from the current point (grad in p.grad); returns
    (accepted, next trial step). On acceptance the new point's evaluation is cached."""
    params = ev.params
    grads = [p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p) for p in params]
    g2 = ev.grad_norm**2
    old = [p.detach().clone() for p in params]
    slack = 8.0 * torch.finfo(params[0].dtype).eps * abs(f)
    for _ in range(ARMIJO_MAX_HALVINGS):
        with torch.no_grad():
            for p, p0, g in zip(params, old, grads, strict=True):
                torch.add(p0, g, alpha=-t, out=p)
        obj, mse = ev.graph()
        f_new = float(obj.detach())
        if math.isfinite(f_new) and f_new <= f - ARMIJO_C * t * g2 + slack:
            ev.commit(obj, mse)
            return True, t * ARMIJO_GROW if grow else t
        t *= ARMIJO_SHRINK
    with torch.no_grad():
        for p, p0 in zip(params, old, strict=True):
            p.copy_(p0)
    return False, t


def certificate(cfg: RunConfig, model: TwoLayerNet, data: Dataset) -> Certificate:
    """Duality gap of the equivalent convex problem at the trained parameters (float64):
    diagonal -> LASSO at theta = a*w; quadratic -> trace-penalised sensing at S = W' diag(s) W
    (PSD-constrained for a positive second layer, nuclear norm for a signed one)."""
    lam = float(cfg.weight_decay)
    if isinstance(model, DiagonalNet):
        return lasso_certificate(data.x, data.y, model.theta(), lam)
    if isinstance(model, QuadraticNet):
        return sensing_certificate(
            data.x, data.y, model.matrix(), lam, psd=model.second_layer == "positive"
        )
    raise TypeError(f"no certificate for {type(model).__name__}")
