"""The slot scheduler: many networks of one shape trained as one tensor program.

:class:`Batch` trains the runs of one shape (model, d, n, width, second layer, dtype,
device, optimizer) together: K *slots* share one tensor program (:mod:`workers.networks`),
each slot with its own data, weight decay, parameters, optimizer state
(:mod:`workers.training.optimizers`), stop rules and certificate
(:mod:`workers.training.stopping`). A run that stops leaves its slot and the next waiting run
takes it (continuous batching), so a straggler never holds the others; when no run waits,
the batch shrinks to the slots still busy. A run that diverges fails alone. One run trains
through the same code as a batch of one. :meth:`Batch.outcomes` yields ``(index,
outcome)`` as runs stop.

A batch of quadratic nets with a positive second layer also *prunes* (:meth:`Batch._prune`):
every few steps, once no run waits, the small eigen-directions of S along which F decays
are set to zero where F does not rise, and when every net then fits in fewer rows the batch
computes on those rows only (zero rows stay zero, so this is the same training, cheaper).
Measured on the d = 200, n = 8,000 run (lambda = 0.01, float64, one thread; the minimum has
rank 73): 200 -> 108 -> 84 rows at steps 30 and 40; training 4.6-4.8 s -> 3.1 s, the same 95
steps (107 evaluations against 105), the same certified minimum.

The objective of every slot is ``F = (1/2n) sum (y - f(x))^2 + (lam/2) ||params||^2``,
started from i.i.d. N(0, init_scale^2) parameters (:meth:`Problem.init_params`) or from the
run's ``start`` (the float64 refinement of a float32 run). Everything stays on the device:
per step only the (F, mse, |g|) of the slots, the line search's acceptances and, at a
certificate, a few scalars reach the host.

Armijo: ``F(p + t d) <= F(p) + 1e-4 t g'd + 8 eps |F(p)|`` (the last term tolerates rounding
of F at the precision floor); a rejected trial halves t, at most :data:`MAX_HALVINGS` times.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from workers.networks import (
    BatchedNets,
    Evaluation,
    Preconditioner,
    flops_per_evaluation,
)
from workers.problems.base import Params
from workers.training.optimizers import Optimizer, make_optimizer
from workers.training.run import Run
from workers.training.state import SlotState, TrainOutcome, TrainStopReason
from workers.training.stopping import POLISH_SLACK, StopRules

ARMIJO_C = 1e-4
MAX_HALVINGS = 40
GATHER_FRACTION = 0.5
"""An evaluation of at most this share of the slots gathers them and evaluates them alone."""


@dataclass(frozen=True)
class Phase:
    """What one training phase of a batch asks: its dtype and its certificate tolerance."""

    dtype: torch.dtype
    tolerance: float
    """Largest relative gap of the certificate that stops a run."""
    certify: bool = True
    """False: no certificates (the optimizer alone; the objective rule polishes)."""


PRUNE_EVERY = 10
"""Steps of a batch between its pruning checks (:meth:`Batch._prune`)."""
PRUNE_BELOW = 1e-4
"""A quadratic net's eigen-direction of S below this fraction of the largest, along which F
decays, is set to zero at a pruning check (when F does not rise). Measured on the d = 200,
n = 8,000 run (lambda = 0.01; the minimum has rank 73): pruned at this level from the points
of steps 10, 20, 30 and 40, training went on for the same number of steps to the same
certified minimum (161, 160, 106 and 83 rows kept); at 1e-3 from step 30 it kept 85 rows and
took 99 steps against 65 (a direction of the minimum was cut and had to grow back)."""
PRUNE_MIN_FLOPS = 1e8
"""A batch prunes only when one evaluation of all its nets costs at least these matmul flops
(:func:`workers.networks.flops_per_evaluation`): below, the evaluation a pruning check spends
and the steps a changed point may cost are about what the narrower evaluations save
(one run, float64, one thread, pruned against not: d = 60, n = 2,400, lambda = 0.03,
3.5e7 flops: 0.24 s against 0.25 s; d = 100, n = 4,000, 1.6e8 flops: lambda = 0.01 1.30 s
against 1.55 s, lambda = 0.03 0.92 s against 0.78 s; d = 150, n = 6,000, lambda = 0.01:
3.4 s against 4.0 s)."""
SPARE_ROWS = 2
"""Zero rows a narrowed batch keeps past its widest net: room for a growth correction."""
NARROW_AT = 0.8
"""A batch narrows when its nets fit in at most this fraction of its rows. On the d = 200 run
above: 95 steps, training 3.1-3.2 s; at 0.9 it also pruned at step 10 (to 163 rows) and took
124 steps, 4.1-4.4 s."""

WIDTH_CORRECTIONS = 3
"""A narrow network (:attr:`Problem.width_limited`) stops at a stationary point the convex
certificate refuses after at most this many corrections (its minimum may need more rank
than it has). Measured at d = 20, n = 800, lambda = 0.03, widths 1-10: with 25 the runs
took 10,000-12,000 steps (30-40 s: each correction found a tiny improvement, then waited
for the next certificate); with 3, 38-75 steps and the same minima (restart spread 1e-16
against 6e-9 with none)."""


class Batch:
    """The device-side state of the K slots, and the loop (see the module docstring)."""

    def __init__(self, runs: Sequence[Run], device: torch.device, slots: int, phase: Phase) -> None:
        first = runs[0].ready[0]
        shape = first.shape()
        if any(r.ready[0].shape() != shape for r in runs):
            raise ValueError("a batch needs runs of one shape")
        self.runs, self.phase = runs, phase
        self.tr = first.cfg.training
        if self.tr.optimizer == "convex":
            raise ValueError("optimizer 'convex' is not a network optimizer: use workers.convex")
        self.device = device
        self.dtype = phase.dtype
        self.eps = torch.finfo(self.dtype).eps
        self.nets: BatchedNets = first.nets(device, self.dtype)
        k = max(1, min(slots, len(runs)))
        self.size = k
        n, d, p = first.cfg.n, first.cfg.d, self.nets.n_params

        def zeros(*shape: int) -> Tensor:
            return torch.zeros(*shape, dtype=self.dtype, device=device)

        self.x, self.y, self.lam = zeros(k, n, d), zeros(k, n), zeros(k)
        self.p, self.good_p, self.best_p, self.g = (zeros(k, p) for _ in range(4))
        self.f, self.mse = zeros(k), zeros(k)
        self.curvature = zeros(k, d) if self.nets.preconditioned else None
        self.opt: Optimizer = make_optimizer(
            self.tr.optimizer,
            k,
            p,
            self.dtype,
            device,
            fixed_lr=self.tr.lr is not None,
            preconditioned=self.nets.preconditioned,
        )
        self.rules = StopRules(self, self.tr.optimizer)
        self.prunes = (
            self.nets.prunable and self.tr.optimizer in ("lbfgs", "gd") and not first.width_limited
        )
        """Whether the batch prunes its nets and narrows (:meth:`_prune`)."""
        self.updates = 0
        self.certifies = phase.certify
        self.slots: list[SlotState | None] = [None] * k
        self.waiting = deque(range(len(runs)))
        self.polish_slack = max(POLISH_SLACK, 100.0 * self.eps)
        self._finished: list[tuple[int, TrainOutcome]] = []
        self._held: dict[int, tuple[float, float]] = {}
        for i in range(k):
            self._fill(i)
        self._evaluate_current(self.active())

    # -- slots ------------------------------------------------------------------------------

    def _fill(self, i: int) -> None:
        """Give slot i the next waiting run (or leave it empty)."""
        if not self.waiting:
            self.slots[i] = None
            return
        index = self.waiting.popleft()
        run = self.runs[index]
        problem, _, data = run.ready
        self.x[i].copy_(data.x)
        if self.curvature is not None:
            self.curvature[i] = self.nets.data_curvature(self.x[i : i + 1])[0]
        self.y[i].copy_(data.y)
        self.lam[i] = float(problem.cfg.weight_decay)
        start = run.start if run.start is not None else problem.init_params()
        self.p[i].copy_(self.nets.pack(start))
        tr = problem.cfg.training
        self.opt.reset(i, lr=tr.lr)
        f_zero = float(data.y @ data.y) / (2 * problem.cfg.n)
        limit = run.timeout_s
        timeout = None if limit is None else max(1e-3, limit - run.time_used)
        self.slots[i] = SlotState(
            run=index,
            started=time.monotonic(),
            f_cap=f_zero * (1.0 + 1e-6) + 1e-300,
            max_steps=max(
                _REFINE_MIN_STEPS if run.steps_done else 0, tr.max_steps - run.steps_done
            ),
            timeout_s=timeout,
            step_size=tr.lr if tr.lr is not None else 1.0,
            batch_size=self.size,
            tol_f=max(tr.tol, 10.0 * self.eps),
            grad_factor=math.sqrt(tr.tol),
            tolerance=self.phase.tolerance,
        )
        self._held[index] = (run.timings.certificate, run.timings.corrections)

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
        """Slot i's parameters (of ``self.p`` or of ``source``) as float64 on the device."""
        return self.nets.unpack((self.p if source is None else source)[i])

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

    def outcomes(self) -> Iterator[tuple[int, TrainOutcome]]:
        """Train every run; yields (run index, outcome) as runs stop."""
        while self.active():
            fresh = self._visit(self.active())
            while fresh:  # a run that took a slot is visited before it moves
                fresh = self._visit(fresh)
            yield from self._drain()
            if len(self.active()) <= self.size // 2:
                self._compact()
            if self.active():
                self._prune()
                self._update()
        yield from self._drain()

    def _drain(self) -> Iterator[tuple[int, TrainOutcome]]:
        done, self._finished = self._finished, []
        yield from done

    def _visit(self, which: list[int]) -> list[int]:
        """Apply the stop rules to these slots at their current point; refill stopped slots
        (returns the slots that took a new run)."""
        gnorm = self.g.norm(dim=1)
        finite = torch.isfinite(self.f) & torch.isfinite(self.mse) & torch.isfinite(gnorm)
        self.good_p = torch.where(finite[:, None], self.p, self.good_p)
        f, mse, gn = torch.stack([self.f, self.mse, gnorm]).to(torch.float64).tolist()
        refilled: list[int] = []
        for i in which:
            slot = self.slots[i]
            assert slot is not None
            reason = self.rules.visit(i, slot, f[i], mse[i], gn[i])
            if reason is not None:
                self._finish(i, slot, reason)
                self._fill(i)
                if self.slots[i] is not None:
                    refilled.append(i)
        if refilled:
            self._evaluate_current(refilled)
        return refilled

    def _finish(self, i: int, slot: SlotState, reason: TrainStopReason) -> None:
        objective, mse, gnorm = slot.good
        run = self.runs[slot.run]
        wall = time.monotonic() - slot.started
        cert0, corr0 = self._held.pop(slot.run)
        spent = run.timings.certificate - cert0 + run.timings.corrections - corr0
        run.timings.train += max(wall - spent, 0.0)
        self._finished.append(
            (
                slot.run,
                TrainOutcome(
                    params=self.params(i),
                    steps=slot.k,
                    stop_reason=reason,
                    objective=objective,
                    train_loss=mse,
                    grad_norm=gnorm,
                    wall_time_s=wall,
                    device=str(self.device),
                    batch_size=slot.batch_size,
                    error=slot.error,
                    evaluations=slot.evaluations,
                    corrections=slot.corrections,
                ),
            )
        )

    # -- what the stop rules ask of the batch (workers.training.stopping.SlotHost) ----------

    def restore_good(self, i: int) -> None:
        self.p[i].copy_(self.good_p[i])

    def save_best(self, i: int) -> None:
        self.best_p[i].copy_(self.p[i])

    def restore_best(self, i: int) -> None:
        self.p[i].copy_(self.best_p[i])

    def certify(self, i: int, slot: SlotState) -> tuple[bool, float]:
        run = self.runs[slot.run]
        params = self.params(i)
        # the free bound, and a short warm solve when it is near (Problem.certificate); a
        # refusal spaces the next request by the gradient (workers.training.stopping)
        gap = run.certificate(params).gap
        if gap <= slot.tolerance:
            return True, gap
        narrow = run.ready[0].width_limited
        moved = run.correct(params) if not narrow or slot.corrections < WIDTH_CORRECTIONS else None
        if moved is not None:
            if self.prunes and self.nets.width < self.nets.full_width:
                live = self.nets.live_units(moved)
                if live >= self.nets.width:  # no spare row left for the next growth
                    self._resize(min(live + SPARE_ROWS, self.nets.full_width))
            self.p[i].copy_(self.nets.pack(moved))
            self.opt.reset(i, new_run=False)
            slot.corrections += 1
            slot.prev_f, slot.calm, slot.corrected = None, 0, True
            self._evaluate_current([i])  # the corrected point is the slot's new current point
            return False, gap
        if narrow:
            # a stationary point of a network too narrow for the convex minimum that no
            # correction improves: it stops here, and the task certifies it by second-order
            # stationarity and restarts (workers.second_order) unless the gap closes
            return True, gap
        return False, gap

    def observe_curve(self, i: int, slot: SlotState) -> None:
        every = self.runs[slot.run].cfg.measure.curve_every
        if every and slot.k % every == 0:
            self.runs[slot.run].observe(slot.k, self.params(i))

    def step_size(self, i: int, slot: SlotState) -> float:
        return self.opt.lr_of(i, slot)

    def optimizer_observe(self, i: int, slot: SlotState, f: float) -> None:
        self.opt.observe(i, slot, f)

    def can_polish(self) -> bool:
        return self.opt.can_polish()

    # -- one update of every live slot ------------------------------------------------------

    def _update(self) -> None:
        self.updates += 1
        live = self.active()
        direction, t = self.opt.direction(self.p, self.g, self.slots, self._h0())
        if not self.opt.line_search:  # fixed steps (gd with lr, adam): no line search
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
        acc = accepted.tolist()
        for i in live:
            slot = self.slots[i]
            assert slot is not None
            if acc[i]:
                slot.k += 1
            elif self.opt.kind == "lbfgs" and not slot.polishing:
                # no decrease: F is flat to rounding here; polish with unit steps from now on
                self.rules.start_polish(i, slot, float(self.f[i]))
            else:
                slot.search_failed = True

    # -- pruning: fewer rows to compute on ------------------------------------------------

    def _prune(self) -> None:
        """Every :data:`PRUNE_EVERY` steps, once no run waits for a slot: when setting each
        net's small eigen-directions along which F decays to zero (:meth:`BatchedNets.prune`)
        would fit every net in at most :data:`NARROW_AT` of the rows, that pruning is kept
        where F does not rise (one evaluation; the slot's optimizer state follows the
        rotation, :meth:`Optimizer.carry`) and the batch computes on the rows the nets then
        need and :data:`SPARE_ROWS` more. The zero rows stay zero (:mod:`workers.networks`),
        so a narrowed batch trains exactly as the full one would from the pruned point."""
        if not self.prunes or self.waiting or self.updates == 0 or self.updates % PRUNE_EVERY:
            return
        cfg = self.runs[0].cfg
        flops = len(self.active()) * flops_per_evaluation(cfg.model, cfg.n, cfg.d, self.nets.width)
        if flops < PRUNE_MIN_FLOPS:
            return
        live = [i for i, s in enumerate(self.slots) if s is not None and not s.polishing]
        if not live:
            return
        cand = self.nets.prune(self.p, self.g, PRUNE_BELOW)
        dropped = cand.dropped.tolist()
        rows = [i for i in live if dropped[i]]
        now = self.nets.live(self.p)
        fit = torch.where(cand.dropped, cand.live, now)[self.active()].max()
        if rows and int(fit) + SPARE_ROWS <= NARROW_AT * self.nets.width:
            # only a pruning that narrows the batch is worth its evaluation
            mask, (f, mse, g) = self._evaluate(cand.params, rows)
            slack = 8.0 * self.eps * self.f.abs()
            ok = mask & torch.isfinite(f) & torch.isfinite(g).all(dim=1) & (f <= self.f + slack)
            keep = ok[:, None]
            for name in ("p", "good_p", "best_p"):
                setattr(self, name, torch.where(keep, cand.params, getattr(self, name)))
            self.g = torch.where(keep, g, self.g)
            self.f = torch.where(ok, f, self.f)
            self.mse = torch.where(ok, mse, self.mse)
            self.opt.carry(ok, cand.carry)
            width = int(self.nets.live(self.p)[self.active()].max()) + SPARE_ROWS
            if width <= NARROW_AT * self.nets.width:
                self._resize(width)

    def _resize(self, width: int) -> None:
        """The batch computes on ``width`` rows (the rows cut are zero in every live slot)."""
        for i, slot in enumerate(self.slots):
            if slot is None:  # an empty slot's last run may have used the rows cut
                for t in (self.p, self.good_p, self.best_p, self.g):
                    t[i].zero_()
                self.opt.reset(i)
        nets = self.nets

        def to(t: Tensor) -> Tensor:
            return nets.resize(t, width)

        for name in ("p", "good_p", "best_p", "g"):
            setattr(self, name, to(getattr(self, name)))
        self.nets = nets.narrowed(width)
        self.opt.resize(to, self.nets.n_params)

    def _h0(self) -> Preconditioner | None:
        """P, L-BFGS's initial inverse Hessian at the current point up to its scale, where
        the nets have one (:meth:`BatchedNets.preconditioner`; slots with lam = 0 keep I)."""
        curvature, p, lam = self.curvature, self.p, self.lam
        if self.opt.kind != "lbfgs" or curvature is None or not bool((lam > 0).any()):
            return None
        on = lam > 0
        safe = torch.where(on, lam, torch.ones_like(lam))
        apply = self.nets.preconditioner(p, safe, curvature)

        def h0(v: Tensor) -> Tensor:
            return torch.where(on[:, None], apply(v), v)

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
            finished = done.tolist()
            rows = [i for i in live if not finished[i]]
            if not rows:
                break
            t = torch.where(done, t, 0.5 * t)
        return trial, f, mse, g, done, t


_REFINE_MIN_STEPS = 500
"""A float64 refinement gets the steps left of the run's budget, and at least these."""
