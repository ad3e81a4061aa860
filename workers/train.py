"""Training the networks' own parameters to the global minimum of their objective.

:func:`train` runs full-batch ``gd``, ``adam`` or ``lbfgs`` (``cfg.training.optimizer``; the
``convex`` optimizer lives in :mod:`workers.convex` and is refused here with ValueError) on

    F(params) = (1/2n) sum (y - f(x))^2 + (lam/2) ||params||^2,      lam = cfg.weight_decay,

starting from i.i.d. N(0, init_scale^2) parameters (:meth:`workers.problems.Problem.build_net`).
A ``certificate(net)`` callback (the duality gap of the equivalent convex problem at the
network's parameters, :meth:`workers.problems.Problem.certificate`) decides whether a
stopping point is the global minimum.

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
   when a ``certificate(net)`` callback is given, its relative gap is within
   :func:`workers.certificate.certificate_tolerance` of the dtype. A small gradient without a
   certificate is a plateau near a saddle (directions still growing from the small initialisation):
   training goes on and asks again after 10, 20, 40, ... (at most 640) steps.
3. ``"objective"``: ``|F_k - F_{k-1}| / max(|F_k|, 1e-300) < tol_F`` for 10 consecutive steps
   (with a ``certificate`` callback: only when it certifies the minimum, asked with the same
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

Curve: ``on_step(k, F_k, net)`` is called after every finite evaluation, so the caller can
measure anything at any step (the task records the learning curve with it).

Device: ``device`` argument, else ``cfg.training.device``: ``"auto"`` = cuda if available
else cpu; ``"cuda"`` without CUDA raises RuntimeError. The data is moved to the device once.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from workers.certificate import Certificate, certificate_tolerance
from workers.data import Dataset
from workers.networks import TwoLayerNet
from workers.problems import Problem

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
CERTIFICATE_FIRST_WAIT = 10
"""Steps to wait before asking for a certificate again after a refusal (doubling each time)."""
CERTIFICATE_MAX_WAIT = 640
POLISH_SLACK = 1e-12
"""Polishing stops (best iterate kept) if F rises by more than this, relative."""

CertificateFn = Callable[[TwoLayerNet], Certificate]
StepFn = Callable[[int, float, TwoLayerNet], None]


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

    def snapshot(self) -> list[Tensor]:
        """A copy of the current parameters."""
        return [p.detach().clone() for p in self.params]

    def save(self, into: list[Tensor]) -> None:
        """Copy the current parameters into a snapshot."""
        with torch.no_grad():
            for p, q in zip(self.params, into, strict=True):
                q.copy_(p)

    def restore(self, snapshot: list[Tensor]) -> None:
        """Set the parameters to a snapshot."""
        with torch.no_grad():
            for p, q in zip(self.params, snapshot, strict=True):
                p.copy_(q)


Metrics = tuple[float, float, float]
"""(objective, mse, grad_norm) of an iterate."""


class _Trainer:
    """The loop of :func:`train`: one method per stop rule of the module docstring."""

    def __init__(
        self,
        problem: Problem,
        data: Dataset,
        device: torch.device | None,
        on_step: StepFn | None,
        certificate: CertificateFn | None,
    ) -> None:
        cfg = problem.cfg
        self.tr = tr = cfg.training
        if tr.optimizer == "convex":
            raise ValueError("optimizer 'convex' is not a network optimizer: use workers.convex")
        self.start = time.monotonic()
        self.dev = device if device is not None else resolve_device(tr.device)
        dtype = torch_dtype(tr.dtype)
        x = torch.as_tensor(data.x, dtype=torch.float64).to(dtype=dtype, device=self.dev)
        y = torch.as_tensor(data.y, dtype=torch.float64).to(dtype=dtype, device=self.dev)
        self.model = problem.build_net(self.dev, dtype)
        self.ev = _Evaluator(self.model, x, y, float(cfg.weight_decay))
        self.on_step, self.certificate = on_step, certificate
        self.cert_tol = certificate_tolerance(tr.dtype)
        self.tol_f = max(tr.tol, 10.0 * torch.finfo(dtype).eps)
        self.grad_factor = math.sqrt(tr.tol)
        self.polish_slack = max(POLISH_SLACK, 100.0 * torch.finfo(dtype).eps)
        # F at zero parameters bounds the global minimum: no point above it has converged.
        f_zero = float(data.y @ data.y) / (2 * len(data.y))
        self.f_cap = f_zero * (1.0 + 1e-6) + 1e-300
        self.lbfgs: torch.optim.LBFGS | None = None
        self.adam: torch.optim.Adam | None = None
        if tr.optimizer == "lbfgs":
            self.lbfgs = torch.optim.LBFGS(
                self.ev.params,
                lr=1.0,
                max_iter=1,
                max_eval=25,
                tolerance_grad=0.0,
                tolerance_change=0.0,
                history_size=LBFGS_HISTORY,
                line_search_fn="strong_wolfe",
            )
        elif tr.optimizer == "adam":
            lr = tr.lr if tr.lr is not None else ADAM_DEFAULT_LR
            self.adam = torch.optim.Adam(self.ev.params, lr=lr)
        self.step_size = tr.lr if tr.lr is not None else 1.0  # gd: fixed lr, or next Armijo trial
        self.armijo = tr.optimizer == "gd" and tr.lr is None
        self.last_good = self.ev.snapshot()
        self.good: Metrics | None = None  # metrics of last_good
        self.prev_f: float | None = None
        self.calm = 0
        self.polishing = False  # lbfgs / backtracking gd, once F is flat to rounding
        self.best = self.ev.snapshot()
        self.best_metrics: Metrics = (math.nan, math.nan, math.inf)
        self.f_ref = math.inf
        self.stale = 0
        self.k = 0
        self.next_certificate = 0
        self.certificate_wait = CERTIFICATE_FIRST_WAIT // 2
        self.error: str | None = None

    # -- the loop ---------------------------------------------------------------------------

    def run(self) -> TrainOutcome:
        while True:
            reason = self._visit()
            if reason is None:
                reason = self._update()
            if reason is not None:
                return self._outcome(reason)
            self.k += 1

    def _visit(self) -> TrainStopReason | None:
        """Evaluate at step k and apply the stop rules (None: go on)."""
        ev = self.ev
        f = ev()
        finite = math.isfinite(f) and math.isfinite(ev.grad_norm) and math.isfinite(ev.mse)
        if self.polishing and (not finite or f > self.f_ref + self.polish_slack * abs(self.f_ref)):
            return self._end_polish("objective")
        if not finite:
            self.error = (
                f"diverged at step {self.k}: non-finite objective or gradient "
                f"(optimizer {self.tr.optimizer}, lr {self._lr():.3g})"
            )
            ev.restore(self.last_good)
            return "diverged"
        ev.save(self.last_good)
        self.good = (f, ev.mse, ev.grad_norm)
        if self.on_step is not None:
            self.on_step(self.k, f, self.model)
        reason = self._gradient_rule(f) or (
            self._polish_rule() if self.polishing else self._objective_rule(f)
        )
        if reason is not None:
            return reason
        if self.adam is not None and self.prev_f is not None and f > self.prev_f:
            for group in self.adam.param_groups:
                group["lr"] *= ADAM_DECAY
        self.prev_f = f
        return self._budget_rule()

    def _certified(self) -> bool:
        """Ask for a certificate now; after a refusal, wait twice as long as last time."""
        assert self.certificate is not None
        if self.certificate(self.model).gap <= self.cert_tol:
            return True
        self.certificate_wait = min(2 * self.certificate_wait, CERTIFICATE_MAX_WAIT)
        self.next_certificate = self.k + self.certificate_wait
        return False

    def _gradient_rule(self, f: float) -> TrainStopReason | None:
        """Rule 2: a small gradient, certified. Without a certificate it is a plateau near a
        saddle (directions still growing from the small init): go on, ask again later."""
        small = f <= self.f_cap and self.ev.grad_norm <= self.grad_factor * max(1.0, abs(f))
        if not small or self.k < self.next_certificate:
            return None
        if self.certificate is None or self._certified():
            return "gradient"
        return None

    def _polish_rule(self) -> TrainStopReason | None:
        """Polishing keeps the iterate with the smallest |g|; it ends when |g| is stale."""
        assert self.good is not None
        if self.ev.grad_norm < self.best_metrics[2]:
            self.ev.save(self.best)
            self.best_metrics = self.good
            self.stale = 0
            return None
        self.stale += 1
        self.step_size *= ARMIJO_SHRINK  # gd: damp an oscillation at the edge of stability
        if self.stale >= OBJECTIVE_PATIENCE:
            return self._end_polish("objective")
        return None

    def _objective_rule(self, f: float) -> TrainStopReason | None:
        """Rule 3: a flat objective stops on a certificate, or starts polishing."""
        if self.prev_f is None:
            return None
        flat = abs(f - self.prev_f) / max(abs(f), 1e-300) < self.tol_f
        self.calm = self.calm + 1 if flat and f <= self.f_cap else 0
        if self.calm < OBJECTIVE_PATIENCE:
            return None
        if self.certificate is not None:
            # slow progress (coordinates near the threshold still growing) is not a minimum
            self.calm = 0
            if self.k >= self.next_certificate and self._certified():
                return "objective"
            return None
        if self.lbfgs is None and not self.armijo:
            return "objective"
        self.polishing = True
        if self.lbfgs is not None:
            self.lbfgs.param_groups[0]["line_search_fn"] = None
        self.ev.save(self.best)
        assert self.good is not None
        self.best_metrics = self.good
        self.f_ref = f
        return None

    def _budget_rule(self) -> TrainStopReason | None:
        """Rules 4 and 5: the step budget and the wall-time limit."""
        if self.k >= self.tr.max_steps:
            return self._end_polish("max_steps") if self.polishing else "max_steps"
        elapsed = time.monotonic() - self.start
        if self.tr.timeout_s is not None and elapsed > self.tr.timeout_s:
            self.error = (
                f"wall time {elapsed:.3f} s exceeded timeout_s={self.tr.timeout_s} at step {self.k}"
            )
            return self._end_polish("timeout") if self.polishing else "timeout"
        return None

    def _end_polish(self, reason: TrainStopReason) -> TrainStopReason:
        """Stop with the best polished iterate restored."""
        self.ev.restore(self.best)
        self.good = self.best_metrics
        return reason

    def _update(self) -> TrainStopReason | None:
        """One parameter update; a backtracking search that finds no decrease stops the run."""
        ev = self.ev
        if self.lbfgs is not None:
            self.lbfgs.step(ev)  # type: ignore[no-untyped-call]
        elif self.adam is not None:
            self.adam.step()  # p.grad holds grad F_k (ev() just ran or was cached)
        elif self.tr.lr is not None:
            with torch.no_grad():
                for p in ev.params:
                    assert p.grad is not None
                    p.sub_(self.tr.lr * p.grad)
        else:
            accepted, self.step_size = _armijo_step(
                ev, ev.value, self.step_size, grow=not self.polishing
            )
            if not accepted:
                return self._end_polish("objective") if self.polishing else "objective"
        return None

    def _lr(self) -> float:
        if self.adam is not None:
            return float(self.adam.param_groups[0]["lr"])
        return self.step_size

    def _outcome(self, reason: TrainStopReason) -> TrainOutcome:
        objective, mse, gnorm = (
            self.good if self.good is not None else (math.nan, math.nan, math.nan)
        )
        return TrainOutcome(
            model=self.model,
            steps=self.k,
            stop_reason=reason,
            objective=objective,
            train_loss=mse,
            grad_norm=gnorm,
            wall_time_s=time.monotonic() - self.start,
            device=str(self.dev),
            error=self.error,
            evaluations=self.ev.evaluations,
        )


def train(
    problem: Problem,
    data: Dataset,
    *,
    device: torch.device | None = None,
    on_step: StepFn | None = None,
    certificate: CertificateFn | None = None,
) -> TrainOutcome:
    """Train the network of ``problem`` on ``data`` (see the module docstring for the rules)."""
    return _Trainer(problem, data, device, on_step, certificate).run()


def _armijo_step(ev: _Evaluator, f: float, t: float, *, grow: bool) -> tuple[bool, float]:
    """One backtracking step from the current point (grad in p.grad); returns
    (accepted, next trial step). On acceptance the new point's evaluation is cached."""
    params = ev.params
    grads = [p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p) for p in params]
    g2 = ev.grad_norm**2
    old = ev.snapshot()
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
    ev.restore(old)
    return False, t
