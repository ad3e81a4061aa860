"""Batched training: many networks of one shape to their certified global minima, one program.

:func:`train_batch` trains the runs of one shape (model, d, n, width, second layer, dtype,
device, optimizer) together: K *slots* share one tensor program (:mod:`workers.networks`),
each slot with its own data, weight decay, parameters, optimizer state, stop rules and
certificate. A run that stops leaves its slot, and the next waiting run takes it
(continuous batching), so a straggler never holds the others; when no run waits, the batch
shrinks to the slots still busy. A run that diverges fails alone. One run trains through
the same code as a batch of one.

The objective of every slot is ``F = (1/2n) sum (y - f(x))^2 + (lam/2) ||params||^2``,
started from i.i.d. N(0, init_scale^2) parameters (:meth:`Problem.init_params`) or from the
parameters given (the float64 refinement of a float32 run).

Optimizers (per slot, vectorised over the batch)
-----------------------------------------------
* ``lbfgs``: limited-memory BFGS, :data:`LBFGS_HISTORY` pairs, in compact form, initial
  inverse Hessian ``(s'y / y'y) I`` -- or, for nets that have one
  (:meth:`BatchedNets.precondition`: the diagonal net's 2 x 2 Gauss-Newton blocks), that
  preconditioner P at the current point scaled by ``s'y / y'Py``, with
  :data:`PRECONDITIONED_HISTORY` pairs; a
  backtracking Armijo line search from t = 1 (an unpreconditioned first step from
  ``min(1, 1/|g|_1)``); a pair enters the history only when ``s'y > 0``.
* ``gd``: gradient descent with Armijo backtracking from the last accepted step (grown by
  1.25 after an acceptance), or with the fixed ``training.lr`` (no safeguard: a far too large
  lr diverges, which is detected).
* ``adam``: Adam with ``training.lr`` (default :data:`ADAM_DEFAULT_LR`), its lr halved
  whenever the objective rises.

Armijo: ``F(p + t d) <= F(p) + 1e-4 t g'd + 8 eps |F(p)|`` (the last term tolerates rounding
of F at the precision floor); a rejected trial halves t, at most :data:`MAX_HALVINGS` times.

Polishing (``lbfgs`` and backtracking ``gd``). Near the optimum F is flat to rounding long
before the duality gap is small (the gap is first order in the stationarity error, F only
second order), so a value-based line search stalls. When the objective rule (3. below)
fires without a certificate hook, or the line search finds no decrease, a slot polishes:
unit quasi-Newton steps (gd: steps halved whenever |g| does not improve), keeping the
iterate of smallest |g|; it ends with ``"objective"`` (that iterate restored) when |g| has not
improved for 10 steps or F rises by more than ``max(1e-12, 100 eps)`` relative.

Stop rules (per slot, in this order at every step k)
-----------------------------------------------------
1. ``"diverged"``: F or the gradient not finite; the last finite iterate is restored and
   reported; ``error`` names the step and the step size.
2. ``"gradient"``: ``|g| <= sqrt(tol) max(1, |F|)`` and, with a certificate hook, the
   certificate's relative gap within the slot's tolerance. A small gradient without a
   certificate is a plateau near a saddle or a valley: the slot applies a *support
   correction* (:meth:`Problem.correct`, exact line searches along the near-threshold
   directions the certificate names, :mod:`workers.corrections`), restarts its L-BFGS
   history, and asks again after 5, 10, 20, ... (at most 640) steps.
3. ``"objective"``: the relative change of F below ``max(tol, 10 eps)`` for 10 steps in a row
   (with a certificate hook: only a certified point stops; a refused one is corrected as in
   2.). Rules 2 and 3 count only at points with ``F <= F(0) = |y|^2/(2n)``.
4. ``"max_steps"`` and 5. ``"timeout"`` (wall time of the run since it took its slot).

Hooks per run: ``certificate(params) -> Certificate`` and ``on_step(k, F, params)`` every
``every`` steps (the learning curve). Outcomes are handed to ``on_done`` as runs finish, so
a caller keeps them even if the batch later fails (a CUDA out-of-memory error, say).
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from numpy.typing import NDArray
from torch import Tensor

from workers.certificate import Certificate
from workers.data import Dataset
from workers.networks import BatchedNets, Evaluation
from workers.problems import Problem
from workers.tensors import mv, vm

Array = NDArray[np.float64]
Params = dict[str, Array]
TrainStopReason = Literal["gradient", "objective", "max_steps", "diverged", "timeout"]

ADAM_DEFAULT_LR = 1e-2
ADAM_DECAY = 0.5
ARMIJO_C = 1e-4
ARMIJO_GROW = 1.25
MAX_HALVINGS = 40
OBJECTIVE_PATIENCE = 10
LBFGS_HISTORY = 50
"""Most L-BFGS pairs a run keeps (fewer when they would exceed HISTORY_BYTES)."""
PRECONDITIONED_HISTORY = 20
"""The same for nets with a preconditioner (H0 carries the per-coordinate curvature, and
forming Y'H0Y costs h^2 p a step): on the diagonal net d = 500, n = 128, lam = 1e-3 (8
seeds) 20 pairs took 370-1,173 steps, 2.8 s in all, against 386-654 steps, 3.4 s with 50
(10 pairs: 2.7 s)."""
HISTORY_BYTES = 32 * 2**20
"""Memory of one run's L-BFGS history."""
CERTIFICATE_FIRST_WAIT = 5
CERTIFICATE_MAX_WAIT = 640
POLISH_SLACK = 1e-12
GATHER_FRACTION = 0.5
"""An evaluation of at most this share of the slots gathers them and evaluates them alone."""


@dataclass
class TrainRequest:
    """One run to train: its problem, its data, and what to do at certificates and steps."""

    problem: Problem
    data: Dataset
    tolerance: float
    """Largest relative gap of the certificate that stops the run."""
    start: Params | None = None
    """Initial parameters (None: the run's init stream)."""
    certificate: Callable[[Params], Certificate] | None = None
    on_step: Callable[[int, float, Params], None] | None = None
    every: int = 0
    max_steps: int | None = None
    """Step budget (None: ``training.max_steps``)."""
    timeout_s: float | None = None
    """Wall-time limit (None: ``training.timeout_s``)."""


@dataclass
class TrainOutcome:
    """What training did to one run; metrics are float64 Python floats."""

    params: Params
    steps: int
    stop_reason: TrainStopReason
    objective: float
    train_loss: float
    """(1/n) sum (y - f)^2."""
    grad_norm: float
    wall_time_s: float
    device: str
    batch_size: int
    """Slots of the batch the run trained in."""
    error: str | None = None
    evaluations: int = 0
    corrections: int = 0
    """Support corrections applied (workers.corrections)."""


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


@dataclass
class _Slot:
    """The host-side state of one slot (one run)."""

    run: int
    started: float
    f_cap: float
    max_steps: int
    timeout_s: float | None
    batch_size: int
    """Slots of the batch when the run took its slot."""
    tol_f: float
    """The objective rule's relative change: max(training.tol, 10 eps)."""
    grad_factor: float
    """The gradient rule's factor: sqrt(training.tol)."""
    k: int = 0
    prev_f: float | None = None
    calm: int = 0
    polishing: bool = False
    stale: int = 0
    best_g: float = math.inf
    f_ref: float = math.inf
    next_certificate: int = 0
    wait: int = CERTIFICATE_FIRST_WAIT // 2
    step_size: float = 1.0
    good: tuple[float, float, float] = (math.nan, math.nan, math.nan)
    best: tuple[float, float, float] = (math.nan, math.nan, math.inf)
    evaluations: int = 0
    corrections: int = 0
    corrected: bool = False
    """A support correction moved this slot during the current visit."""
    search_failed: bool = False
    """The last line search found no decrease."""
    error: str | None = None


class _Batch:
    """The device-side state of the K slots, and the loop (see the module docstring)."""

    def __init__(
        self,
        requests: Sequence[TrainRequest],
        device: torch.device,
        slots: int,
        on_done: Callable[[int, TrainOutcome], None],
    ) -> None:
        first = requests[0].problem
        shape = first.shape()
        if any(r.problem.shape() != shape for r in requests):
            raise ValueError("train_batch needs runs of one shape")
        self.requests, self.on_done = requests, on_done
        self.cfg = first.cfg
        self.tr = first.cfg.training
        if self.tr.optimizer == "convex":
            raise ValueError("optimizer 'convex' is not a network optimizer: use workers.convex")
        self.device = device
        self.dtype = torch_dtype(self.tr.dtype)
        self.eps = torch.finfo(self.dtype).eps
        self.nets: BatchedNets = first.nets(device, self.dtype)
        k = max(1, min(slots, len(requests)))
        self.size = k
        n, d, p = first.cfg.n, first.cfg.d, self.nets.n_params

        def zeros(*shape: int) -> Tensor:
            return torch.zeros(*shape, dtype=self.dtype, device=device)

        self.x, self.y, self.lam = zeros(k, n, d), zeros(k, n), zeros(k)
        self.p, self.good_p, self.best_p, self.g = (zeros(k, p) for _ in range(4))
        self.f, self.mse = zeros(k), zeros(k)
        # the nets' data statistics for their preconditioner, per slot
        self.curvature = zeros(k, d) if self.nets.preconditioned else None
        self.opt = _Optimizer(
            self.tr.optimizer,
            self.tr.lr is not None,
            k,
            p,
            self.dtype,
            device,
            preconditioned=self.nets.preconditioned,
        )
        self.slots: list[_Slot | None] = [None] * k
        self.waiting = deque(range(len(requests)))
        self.polish_slack = max(POLISH_SLACK, 100.0 * self.eps)
        for i in range(k):
            self._fill(i)
        self._evaluate_current(self.active())

    # -- slots ------------------------------------------------------------------------------

    def _fill(self, i: int) -> None:
        """Give slot i the next waiting run (or leave it empty)."""
        if not self.waiting:
            self.slots[i] = None
            return
        run = self.waiting.popleft()
        req = self.requests[run]
        prob, data = req.problem, req.data
        self.x[i].copy_(torch.as_tensor(data.x))
        if self.curvature is not None:
            self.curvature[i] = self.nets.data_curvature(self.x[i : i + 1])[0]
        self.y[i].copy_(torch.as_tensor(data.y))
        self.lam[i] = float(prob.cfg.weight_decay)
        start = req.start if req.start is not None else prob.init_params()
        self.p[i].copy_(torch.as_tensor(self.nets.pack(start)))
        tr = prob.cfg.training
        self.opt.reset(i, lr=tr.lr)
        f_zero = float(data.y @ data.y) / (2 * len(data.y))
        self.slots[i] = _Slot(
            run=run,
            started=time.monotonic(),
            f_cap=f_zero * (1.0 + 1e-6) + 1e-300,
            max_steps=req.max_steps if req.max_steps is not None else tr.max_steps,
            timeout_s=req.timeout_s if req.timeout_s is not None else tr.timeout_s,
            step_size=tr.lr if tr.lr is not None else 1.0,
            batch_size=self.size,
            tol_f=max(tr.tol, 10.0 * self.eps),
            grad_factor=math.sqrt(tr.tol),
        )

    def _evaluate(self, p: Tensor, rows: list[int]) -> tuple[Tensor, Evaluation]:
        """F, mse and gradient at ``p`` of the slots ``rows`` (counted as their evaluations),
        with the mask of those rows; the other rows of the result are unspecified. Up to
        :data:`GATHER_FRACTION` of the slots are gathered and evaluated alone (a line search
        that backtracks for a few slots, a corrected or refilled slot); more, and the whole
        batch is evaluated (a gather copies the rows' data)."""
        for i in rows:
            slot = self.slots[i]
            assert slot is not None
            slot.evaluations += 1
        mask = torch.zeros(self.size, dtype=torch.bool, device=self.device)
        mask[rows] = True
        if len(rows) > GATHER_FRACTION * self.size:
            return mask, self.nets.evaluate(p, self.x, self.y, self.lam)
        idx = torch.as_tensor(rows, device=self.device)
        part = self.nets.evaluate(
            p.index_select(0, idx),
            self.x.index_select(0, idx),
            self.y.index_select(0, idx),
            self.lam.index_select(0, idx),
        )
        full = []
        for t in part:
            out = torch.full((self.size, *t.shape[1:]), math.nan, dtype=t.dtype, device=t.device)
            out[idx] = t
            full.append(out)
        return mask, (full[0], full[1], full[2])

    def _evaluate_current(self, rows: list[int]) -> None:
        """Evaluate these slots at their current parameters (new runs, corrected points)."""
        mask, (f, mse, g) = self._evaluate(self.p, rows)
        self.f = torch.where(mask, f, self.f)
        self.mse = torch.where(mask, mse, self.mse)
        self.g = torch.where(mask[:, None], g, self.g)

    def active(self) -> list[int]:
        """The slots that hold a run."""
        return [i for i, s in enumerate(self.slots) if s is not None]

    def params(self, i: int, source: Tensor | None = None) -> Params:
        """Slot i's parameters (of ``self.p`` or of ``source``) as float64 numpy."""
        row = (self.p if source is None else source)[i]
        return self.nets.unpack(row.detach().to("cpu", torch.float64).numpy())

    def _compact(self) -> None:
        """Drop empty slots once no run waits (the batch then computes only live runs)."""
        keep = self.active()
        if self.waiting or len(keep) == self.size or not keep:
            return
        idx = torch.as_tensor(keep, device=self.device)
        for name in ("x", "y", "lam", "p", "good_p", "best_p", "f", "mse", "g"):
            setattr(self, name, getattr(self, name).index_select(0, idx).contiguous())
        if self.curvature is not None:
            self.curvature = self.curvature.index_select(0, idx)
        self.opt.select(idx)
        self.slots = [self.slots[i] for i in keep]
        self.size = len(keep)

    # -- the loop ---------------------------------------------------------------------------

    def run(self) -> None:
        while self.active():
            fresh = self._visit(self.active())
            while fresh:  # a run that took a slot is visited before it moves
                fresh = self._visit(fresh)
            if len(self.active()) <= self.size // 2:
                self._compact()
            if self.active():
                self._update()

    def _visit(self, which: list[int]) -> list[int]:
        """Apply the stop rules to these slots at their current point; refill stopped slots
        (returns the slots that took a new run)."""
        gnorm = self.g.norm(dim=1)
        finite = torch.isfinite(self.f) & torch.isfinite(self.mse) & torch.isfinite(gnorm)
        self.good_p = torch.where(finite[:, None], self.p, self.good_p)
        f = self.f.detach().cpu().numpy().astype(np.float64)
        mse = self.mse.detach().cpu().numpy().astype(np.float64)
        gn = gnorm.detach().cpu().numpy().astype(np.float64)
        refilled: list[int] = []
        for i in which:
            slot = self.slots[i]
            assert slot is not None
            reason = self._rules(i, slot, float(f[i]), float(mse[i]), float(gn[i]))
            if reason is not None:
                self._finish(i, slot, reason)
                self._fill(i)
                if self.slots[i] is not None:
                    refilled.append(i)
        if refilled:
            self._evaluate_current(refilled)
        return refilled

    def _rules(
        self, i: int, slot: _Slot, f: float, mse: float, gn: float
    ) -> TrainStopReason | None:
        finite = math.isfinite(f) and math.isfinite(gn) and math.isfinite(mse)
        if slot.polishing and (not finite or f > slot.f_ref + self.polish_slack * abs(slot.f_ref)):
            return self._end_polish(i, slot, "objective")
        if not finite:
            slot.error = (
                f"diverged at step {slot.k}: non-finite objective or gradient "
                f"(optimizer {self.tr.optimizer}, step size {self.opt.lr_of(i, slot):.3g})"
            )
            self.p[i].copy_(self.good_p[i])
            return "diverged"
        slot.good = (f, mse, gn)
        if slot.search_failed:  # no decrease along the direction, even polishing
            return self._end_polish(i, slot, "objective") if slot.polishing else "objective"
        req = self.requests[slot.run]
        if req.on_step is not None and req.every and slot.k % req.every == 0:
            req.on_step(slot.k, f, self.params(i))
        small = f <= slot.f_cap and gn <= slot.grad_factor * max(1.0, abs(f))
        if small and slot.k >= slot.next_certificate and self._certified(i, slot):
            return "gradient"
        if not slot.corrected:
            reason = (
                self._polish_rule(i, slot, gn)
                if slot.polishing
                else self._objective_rule(i, slot, f)
            )
            if reason is not None:
                return reason
        if slot.corrected:  # a new point: its objective is next visit's reference
            slot.corrected = False
        else:
            self.opt.observe(i, slot, f)
            slot.prev_f = f
        return self._budget_rule(i, slot)

    def _certified(self, i: int, slot: _Slot) -> bool:
        """Ask for a certificate; after a refusal, correct the support and wait longer."""
        req = self.requests[slot.run]
        if req.certificate is None:
            return True
        params = self.params(i)
        if req.certificate(params).gap <= req.tolerance:
            return True
        moved = req.problem.correct(req.data, params)
        if moved is not None:
            self.p[i].copy_(torch.as_tensor(self.nets.pack(moved)))
            self.opt.reset(i, new_run=False)
            slot.corrections += 1
            slot.prev_f, slot.calm, slot.corrected = None, 0, True
            self._evaluate_current([i])  # the corrected point is the slot's new current point
        slot.wait = min(2 * slot.wait, CERTIFICATE_MAX_WAIT)
        slot.next_certificate = slot.k + slot.wait
        return False

    def _polish_rule(self, i: int, slot: _Slot, gn: float) -> TrainStopReason | None:
        if gn < slot.best[2]:
            self.best_p[i].copy_(self.p[i])
            slot.best = slot.good
            slot.stale = 0
            return None
        slot.stale += 1
        slot.step_size *= 0.5  # gd: damp an oscillation at the edge of stability
        if slot.stale >= OBJECTIVE_PATIENCE:
            return self._end_polish(i, slot, "objective")
        return None

    def _objective_rule(self, i: int, slot: _Slot, f: float) -> TrainStopReason | None:
        if slot.prev_f is None:
            return None
        flat = abs(f - slot.prev_f) / max(abs(f), 1e-300) < slot.tol_f
        slot.calm = slot.calm + 1 if flat and f <= slot.f_cap else 0
        if slot.calm < OBJECTIVE_PATIENCE:
            return None
        if self.requests[slot.run].certificate is not None:
            slot.calm = 0
            if slot.k >= slot.next_certificate and self._certified(i, slot):
                return "objective"
            return None
        if not self.opt.can_polish():
            return "objective"
        self._start_polish(i, slot, f)
        return None

    def _start_polish(self, i: int, slot: _Slot, f: float) -> None:
        slot.polishing = True
        self.best_p[i].copy_(self.p[i])
        slot.best = slot.good
        slot.f_ref = f

    def _budget_rule(self, i: int, slot: _Slot) -> TrainStopReason | None:
        if slot.k >= slot.max_steps:
            return self._end_polish(i, slot, "max_steps") if slot.polishing else "max_steps"
        elapsed = time.monotonic() - slot.started
        if slot.timeout_s is not None and elapsed > slot.timeout_s:
            slot.error = (
                f"wall time {elapsed:.3f} s exceeded timeout_s={slot.timeout_s} at step {slot.k}"
            )
            return self._end_polish(i, slot, "timeout") if slot.polishing else "timeout"
        return None

    def _end_polish(self, i: int, slot: _Slot, reason: TrainStopReason) -> TrainStopReason:
        self.p[i].copy_(self.best_p[i])
        slot.good = slot.best
        return reason

    def _finish(self, i: int, slot: _Slot, reason: TrainStopReason) -> None:
        objective, mse, gnorm = slot.good
        self.on_done(
            slot.run,
            TrainOutcome(
                params=self.params(i),
                steps=slot.k,
                stop_reason=reason,
                objective=objective,
                train_loss=mse,
                grad_norm=gnorm,
                wall_time_s=time.monotonic() - slot.started,
                device=str(self.device),
                batch_size=slot.batch_size,
                error=slot.error,
                evaluations=slot.evaluations,
                corrections=slot.corrections,
            ),
        )

    # -- one update of every live slot ------------------------------------------------------

    def _update(self) -> None:
        live = self.active()
        direction, t, search = self.opt.direction(self.p, self.g, self.slots, self._h0())
        if not search:  # fixed steps (gd with lr, adam): no line search
            trial = self.p + t[:, None] * direction
            accepted, (f, mse, g) = self._evaluate(trial, live)
        else:
            trial, f, mse, g, accepted, t = self._line_search(direction, t, live)
        self.opt.accepted(self.p, trial, self.g, g, accepted, t, self.slots)
        keep = accepted[:, None]
        self.p = torch.where(keep, trial, self.p)
        self.g = torch.where(keep, g, self.g)
        self.f = torch.where(accepted, f, self.f)
        self.mse = torch.where(accepted, mse, self.mse)
        acc = accepted.cpu().numpy()
        for i in live:
            slot = self.slots[i]
            assert slot is not None
            if acc[i]:
                slot.k += 1
            elif self.opt.kind == "lbfgs" and not slot.polishing:
                # no decrease: F is flat to rounding here; polish with unit steps from now on
                self._start_polish(i, slot, float(self.f[i]))
            else:
                slot.search_failed = True

    def _h0(self) -> Callable[[Tensor], Tensor] | None:
        """P, L-BFGS's initial inverse Hessian at the current point up to its scale, where
        the nets have one (:meth:`BatchedNets.precondition`; slots with lam = 0 keep I)."""
        curvature, p, lam = self.curvature, self.p, self.lam
        if self.opt.kind != "lbfgs" or curvature is None or not bool((lam > 0).any()):
            return None
        on = lam > 0
        safe = torch.where(on, lam, torch.ones_like(lam))

        def h0(v: Tensor) -> Tensor:
            keep = on.view((-1,) + (1,) * (v.dim() - 1))
            return torch.where(keep, self.nets.precondition(p, safe, curvature, v), v)

        return h0

    def _line_search(
        self, direction: Tensor, t: Tensor, live: list[int]
    ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
        """Backtracking Armijo per slot: every slot keeps halving its own t (returned: the
        accepted steps). A polishing L-BFGS slot takes its unit step whatever F does (the
        polish rule watches it)."""
        slope = (self.g * direction).sum(dim=1)
        slack = 8.0 * self.eps * self.f.abs()
        unit = torch.tensor(
            [s is not None and s.polishing and self.opt.kind == "lbfgs" for s in self.slots],
            device=self.device,
        )
        done = torch.zeros(self.size, dtype=torch.bool, device=self.device)
        trial, f, mse, g = self.p.clone(), self.f.clone(), self.mse.clone(), self.g.clone()
        rows = live
        for _ in range(MAX_HALVINGS):
            cand = self.p + t[:, None] * direction
            evaluated, (cf, cmse, cg) = self._evaluate(cand, rows)
            armijo = cf <= self.f + ARMIJO_C * t * slope + slack
            ok = evaluated & ~done & torch.isfinite(cf) & (armijo | unit)
            trial = torch.where(ok[:, None], cand, trial)
            g = torch.where(ok[:, None], cg, g)
            f = torch.where(ok, cf, f)
            mse = torch.where(ok, cmse, mse)
            done |= ok
            finished = done.cpu().numpy()
            rows = [i for i in live if not finished[i]]
            if not rows:
                break
            t = torch.where(done, t, 0.5 * t)
        return trial, f, mse, g, done, t


class _Optimizer:
    """The per-slot state and steps of lbfgs, gd and adam, vectorised over the slots."""

    def __init__(
        self,
        kind: str,
        fixed: bool,
        k: int,
        p: int,
        dtype: torch.dtype,
        device: torch.device,
        *,
        preconditioned: bool = False,
    ) -> None:
        self.kind, self.fixed = kind, fixed
        h = history_size(p, dtype, preconditioned) if kind == "lbfgs" else 0
        a = p if kind == "adam" else 0
        self.h = h
        # the history, oldest first: pairs 0..count-1 of each slot; SY[i, j] = s_i . y_j,
        # YY[i, j] = y_i . y_j (kept up to date at each insertion: the compact form needs them)
        self.s = torch.zeros(k, h, p, dtype=dtype, device=device)
        self.y = torch.zeros(k, h, p, dtype=dtype, device=device)
        self.sy = torch.zeros(k, h, h, dtype=dtype, device=device)
        self.yy = torch.zeros(k, h, h, dtype=dtype, device=device)
        self.count = torch.zeros(k, dtype=torch.long, device=device)
        self.m = torch.zeros(k, a, dtype=dtype, device=device)
        self.v = torch.zeros(k, a, dtype=dtype, device=device)
        self.adam_t = torch.zeros(k, dtype=dtype, device=device)
        self.adam_lr = torch.full((k,), ADAM_DEFAULT_LR, dtype=dtype, device=device)

    def reset(self, i: int, *, new_run: bool = True, lr: float | None = None) -> None:
        """Forget slot i's L-BFGS history (a new run, or a corrected point: the pairs no
        longer describe the objective there); a new run also starts Adam afresh."""
        self.count[i] = 0
        if self.h:
            for t in (self.s, self.y, self.sy, self.yy):
                t[i].zero_()
        if self.kind == "adam" and new_run:
            self.m[i].zero_()
            self.v[i].zero_()
            self.adam_t[i] = 0.0
            self.adam_lr[i] = lr if lr is not None else ADAM_DEFAULT_LR

    def select(self, idx: Tensor) -> None:
        """Keep only these slots (compaction)."""
        for name in ("s", "y", "sy", "yy", "count", "m", "v", "adam_t", "adam_lr"):
            setattr(self, name, getattr(self, name).index_select(0, idx))

    def can_polish(self) -> bool:
        return self.kind == "lbfgs" or (self.kind == "gd" and not self.fixed)

    def lr_of(self, i: int, slot: _Slot) -> float:
        if self.kind == "adam":
            return float(self.adam_lr[i])
        return slot.step_size

    def observe(self, i: int, slot: _Slot, f: float) -> None:
        """Adam: halve the lr of a slot whose objective rose."""
        if self.kind == "adam" and slot.prev_f is not None and f > slot.prev_f:
            self.adam_lr[i] *= ADAM_DECAY

    def direction(
        self,
        p: Tensor,
        g: Tensor,
        slots: Sequence[_Slot | None],
        h0: Callable[[Tensor], Tensor] | None = None,
    ) -> tuple[Tensor, Tensor, bool]:
        """(direction, initial step per slot, whether to line-search); ``h0``: L-BFGS's
        initial inverse Hessian up to its scale (None: I)."""
        k = p.shape[0]
        steps = torch.tensor(
            [s.step_size if s is not None else 0.0 for s in slots], dtype=p.dtype, device=p.device
        )
        if self.kind == "adam":
            self.adam_t += 1.0
            self.m.mul_(0.9).add_(g, alpha=0.1)
            self.v.mul_(0.999).addcmul_(g, g, value=0.001)
            m_hat = self.m / (1.0 - 0.9**self.adam_t)[:, None]
            v_hat = self.v / (1.0 - 0.999**self.adam_t)[:, None]
            return -m_hat / (v_hat.sqrt() + 1e-8), self.adam_lr.clone(), False
        if self.kind == "gd":
            return -g, steps, not self.fixed
        d = -self._inverse_hessian_times(g, h0)
        first = (self.count == 0) & (h0 is None)  # a preconditioned first step has its scale
        l1 = g.abs().sum(dim=1).clamp_min(1e-300)
        t = torch.where(
            first, torch.clamp(1.0 / l1, max=1.0), torch.ones(k, dtype=p.dtype, device=p.device)
        )
        polishing = torch.tensor([s is not None and s.polishing for s in slots], device=p.device)
        # a non-descent direction (rounding): restart from the gradient
        bad = (g * d).sum(dim=1) >= 0
        d = torch.where(bad[:, None], -g, d)
        # polishing slots take unit steps (the line search accepts them whatever F does)
        t = torch.where(polishing, torch.ones_like(t), t)
        return d, t, True

    def _inverse_hessian_times(
        self, g: Tensor, h0: Callable[[Tensor], Tensor] | None = None
    ) -> Tensor:
        """H g for every slot, by the compact form of the L-BFGS matrix (Byrd, Nocedal and
        Schnabel 1994): ``H = H0 + [S H0Y] M [S' ; Y'H0]`` with
        ``M = [[R^-T (D + Y'H0Y) R^-1, -R^-T], [-R^-1, 0]]``, R the upper triangle of S'Y
        and D its diagonal: a few batched matmuls and two triangular solves, no loop.
        ``H0 = gamma I``, or ``gamma P`` with ``P = h0`` the preconditioner at the current
        point, ``gamma = s'y / y'Py`` of the last pair (Y'Y is kept up to date; Y'PY is
        formed here)."""
        k, h = self.count.shape[0], self.h
        if h == 0:
            return g.clone()
        valid = torch.arange(h, device=g.device)[None, :] < self.count[:, None]  # (k, h)
        eye = torch.eye(h, dtype=g.dtype, device=g.device)
        pad = (~valid).to(g.dtype)
        r = torch.triu(self.sy) + pad[:, :, None] * eye  # unused pairs: identity rows
        dg = torch.diagonal(self.sy, dim1=1, dim2=2) * valid.to(g.dtype)
        ar = torch.arange(k, device=g.device)
        last = (self.count - 1).clamp_min(0)
        sy_last = self.sy[ar, last, last]
        # P g, P Y and Y'PY (P = I: g, Y and the Y'Y kept up to date)
        if h0 is None:
            p_g, p_y, y_p_y = g, self.y, self.yy
        else:
            p_g, p_y = h0(g), h0(self.y)
            y_p_y = torch.bmm(self.y, p_y.transpose(1, 2))
        # H0 = gamma P, gamma = s'y / y'Py of the last pair (Oren-Luenberger); gamma scales
        # the small products below, not the (k, h, p) history
        ypy_last = y_p_y[ar, last, last]
        gamma = torch.where(
            (self.count > 0) & (ypy_last > 0), sy_last / ypy_last.clamp_min(1e-300), 1.0
        )
        u = mv(self.s, g).unsqueeze(-1)  # S' g, (k, h, 1)
        v = gamma[:, None, None] * mv(p_y, g).unsqueeze(-1)  # Y' H0 g (H0 symmetric)
        r_u = torch.linalg.solve_triangular(r, u, upper=True)
        y_h0_y_r_u = gamma[:, None, None] * mv(y_p_y, r_u.squeeze(-1)).unsqueeze(-1)
        inner = dg[:, :, None] * r_u + y_h0_y_r_u - v
        top = torch.linalg.solve_triangular(r.transpose(1, 2), inner, upper=False)
        out = vm(top.squeeze(-1), self.s)
        out += gamma[:, None] * (p_g - vm(r_u.squeeze(-1), p_y))
        return out

    def accepted(
        self,
        p: Tensor,
        trial: Tensor,
        g: Tensor,
        g_new: Tensor,
        ok: Tensor,
        t: Tensor,
        slots: Sequence[_Slot | None],
    ) -> None:
        """Record the accepted steps: L-BFGS pairs, the next gd trial."""
        if self.kind == "gd" and not self.fixed:
            for i, s in enumerate(slots):
                if s is not None and bool(ok[i]):
                    s.step_size = float(t[i]) * (1.0 if s.polishing else ARMIJO_GROW)
        if self.kind != "lbfgs":
            return
        s_vec, y_vec = trial - p, g_new - g
        sy = (s_vec * y_vec).sum(dim=1)
        store = ok & (sy > 1e-10 * s_vec.norm(dim=1) * y_vec.norm(dim=1))
        if bool(store.any()):
            self._insert(store, s_vec, y_vec)

    def _insert(self, store: Tensor, s_vec: Tensor, y_vec: Tensor) -> None:
        """Append a pair to the history of the slots in ``store``, with its row and column of
        S'Y and Y'Y. A full history drops its oldest half at once (so the shift is paid once
        per h/2 insertions, not at each)."""
        h = self.h
        full = store & (self.count == h)
        if bool(full.any()):
            drop = h // 2
            for t in (self.s, self.y):
                t[full, : h - drop] = t[full, drop:].clone()
            for t in (self.sy, self.yy):
                t[full, : h - drop, : h - drop] = t[full, drop:, drop:].clone()
            self.count[full] -= drop
        ar = torch.arange(self.count.shape[0], device=s_vec.device)
        idx, pos = ar[store], self.count[store]
        self.s[idx, pos] = s_vec[store]
        self.y[idx, pos] = y_vec[store]
        # dot products with the whole (new) history of every slot, then the stored rows
        s_y = mv(self.y, s_vec)[store]  # y_j . s_new
        y_s = mv(self.s, y_vec)[store]  # s_i . y_new
        y_y = mv(self.y, y_vec)[store]
        keep = (torch.arange(h, device=s_vec.device)[None, :] <= pos[:, None]).to(s_y.dtype)
        self.sy[idx, pos, :] = s_y * keep
        self.sy[idx, :, pos] = y_s * keep
        self.yy[idx, pos, :] = y_y * keep
        self.yy[idx, :, pos] = y_y * keep
        self.count[store] = pos + 1


def history_size(n_params: int, dtype: torch.dtype, preconditioned: bool = False) -> int:
    """L-BFGS pairs per run: LBFGS_HISTORY (PRECONDITIONED_HISTORY for nets with a
    preconditioner), fewer for large networks (HISTORY_BYTES)."""
    per_pair = 2 * n_params * torch.finfo(dtype).bits // 8
    cap = PRECONDITIONED_HISTORY if preconditioned else LBFGS_HISTORY
    return int(max(10, min(cap, HISTORY_BYTES // max(per_pair, 1))))


def train_batch(
    requests: Sequence[TrainRequest],
    *,
    device: torch.device | None = None,
    slots: int | None = None,
    on_done: Callable[[int, TrainOutcome], None] | None = None,
) -> list[TrainOutcome]:
    """Train runs of one shape in batches of ``slots`` (default: all of them at once).

    Returns the outcomes in the order of ``requests``; each is also handed to ``on_done``
    (request index, outcome) as soon as its run stops.
    """
    if not requests:
        return []
    dev = device if device is not None else resolve_device(requests[0].problem.cfg.training.device)
    done: dict[int, TrainOutcome] = {}

    def record(run: int, outcome: TrainOutcome) -> None:
        done[run] = outcome
        if on_done is not None:
            on_done(run, outcome)

    _Batch(requests, dev, slots or len(requests), record).run()
    return [done[i] for i in range(len(requests))]
