"""The stop rules of a slot, its polishing, and when to ask for a certificate.

Rules (per slot, in this order at every visit of its current point, step k)
-----------------------------------------------------------------------------
1. ``"diverged"``: F or the gradient not finite; the last finite iterate is restored and
   reported; ``error`` names the step and the step size.
2. ``"gradient"``: ``|g| <= sqrt(tol) max(1, |F|)`` and the certificate's relative gap within
   the slot's tolerance. A small gradient without a certificate is a plateau near a saddle
   or a valley: the slot applies a *support correction* (:meth:`Problem.correct`, exact line
   searches along the near-threshold directions the certificate names,
   :mod:`workers.corrections`), restarts its L-BFGS history, and asks again later.
3. ``"objective"``: the relative change of F below ``max(tol, 10 eps)`` for 10 steps in a row
   (only a certified point stops; a refused one is corrected as in 2.). Rules 2 and 3 count
   only at points with ``F <= F(0) = |y|^2/(2n)``.
4. ``"max_steps"`` and 5. ``"timeout"`` (wall time of the run since it took its slot).

When to ask again after a refusal: the gap is first order in the stationarity error, so
the next certificate is asked for once the gradient has fallen by the factor the refused gap
was above the tolerance (``|g| <= |g_refused| tol / gap``), and at the latest after 5, 10,
20, ... (at most 640) steps -- what the gradient says, with the doubling wait as a bound.

Polishing (``lbfgs`` and backtracking ``gd``). Near the optimum F is flat to rounding long
before the duality gap is small (the gap is first order in the stationarity error, F only
second order), so a value-based line search stalls. When the line search finds no decrease,
a slot polishes: unit quasi-Newton steps (gd: steps halved whenever |g| does not improve),
keeping the iterate of smallest |g|; it ends with ``"objective"`` (that iterate restored)
when |g| has not improved for 10 steps or F rises by more than ``max(1e-12, 100 eps)``
relative.
"""

from __future__ import annotations

import math
import time
from typing import Protocol

from workers.training.state import (
    CERTIFICATE_MAX_WAIT,
    SlotState,
    TrainStopReason,
)

OBJECTIVE_PATIENCE = 10
POLISH_SLACK = 1e-12


class SlotHost(Protocol):
    """What the rules need of the batch (:class:`workers.training.scheduler.Batch`)."""

    polish_slack: float
    certifies: bool
    """False: no certificates (the optimizer alone, in tests); the objective rule polishes."""

    def restore_good(self, i: int) -> None:
        """Slot i back at its last finite point."""

    def save_best(self, i: int) -> None:
        """Remember slot i's current point as its best (polishing)."""

    def restore_best(self, i: int) -> None:
        """Slot i back at its best point (polishing)."""

    def certify(self, i: int, slot: SlotState) -> tuple[bool, float]:
        """Ask slot i's run for a certificate: (certified, gap); on a refusal the slot is
        corrected where a correction helps."""

    def observe_curve(self, i: int, slot: SlotState) -> None:
        """Record slot i's learning-curve point when it is due."""

    def step_size(self, i: int, slot: SlotState) -> float:
        """The step size slot i uses (for messages)."""

    def optimizer_observe(self, i: int, slot: SlotState, f: float) -> None:
        """The optimizer sees slot i's objective at its new point."""

    def can_polish(self) -> bool:
        """Whether the optimizer polishes."""


class StopRules:
    """The rules of the module docstring, applied to one slot at a time."""

    def __init__(self, host: SlotHost, optimizer_kind: str) -> None:
        self.host = host
        self.kind = optimizer_kind

    def visit(
        self, i: int, slot: SlotState, f: float, mse: float, gn: float
    ) -> TrainStopReason | None:
        """The stop reason of slot i at its current point (F, mse, |g|), or None."""
        host = self.host
        finite = math.isfinite(f) and math.isfinite(gn) and math.isfinite(mse)
        if slot.polishing and (not finite or f > slot.f_ref + host.polish_slack * abs(slot.f_ref)):
            return self.end_polish(i, slot, "objective")
        if not finite:
            slot.error = (
                f"diverged at step {slot.k}: non-finite objective or gradient "
                f"(optimizer {self.kind}, step size {host.step_size(i, slot):.3g})"
            )
            host.restore_good(i)
            return "diverged"
        slot.good = (f, mse, gn)
        if slot.search_failed:  # no decrease along the direction, even polishing
            return self.end_polish(i, slot, "objective") if slot.polishing else "objective"
        host.observe_curve(i, slot)
        small = f <= slot.f_cap and gn <= slot.grad_factor * max(1.0, abs(f))
        if small and self._due(slot, gn) and self._certified(i, slot, gn):
            return "gradient"
        if not slot.corrected:
            if slot.polishing:
                reason = self._polish_rule(i, slot, gn)
            else:
                reason = self._objective(i, slot, f, gn)
            if reason is not None:
                return reason
        if slot.corrected:  # a new point: its objective is next visit's reference
            slot.corrected = False
        else:
            host.optimizer_observe(i, slot, f)
            slot.prev_f = f
        return self._budget(i, slot)

    def _due(self, slot: SlotState, gn: float) -> bool:
        """Whether a certificate is worth asking for now (module docstring)."""
        if slot.k >= slot.next_certificate:
            return True
        if slot.refused is None:
            return False
        g_ref, ratio = slot.refused
        return gn <= g_ref / ratio

    def _certified(self, i: int, slot: SlotState, gn: float) -> bool:
        """Ask for a certificate; after a refusal, wait (module docstring)."""
        if not self.host.certifies:
            return True
        ok, gap = self.host.certify(i, slot)
        if ok:
            return True
        slot.refused = (gn, max(gap / slot.tolerance, 2.0)) if math.isfinite(gap) else None
        slot.wait = min(2 * slot.wait, CERTIFICATE_MAX_WAIT)
        slot.next_certificate = slot.k + slot.wait
        return False

    def _polish_rule(self, i: int, slot: SlotState, gn: float) -> TrainStopReason | None:
        if gn < slot.best[2]:
            self.host.save_best(i)
            slot.best = slot.good
            slot.stale = 0
            return None
        slot.stale += 1
        slot.step_size *= 0.5  # gd: damp an oscillation at the edge of stability
        if slot.stale >= OBJECTIVE_PATIENCE:
            return self.end_polish(i, slot, "objective")
        return None

    def _objective(self, i: int, slot: SlotState, f: float, gn: float) -> TrainStopReason | None:
        if slot.prev_f is None:
            return None
        flat = abs(f - slot.prev_f) / max(abs(f), 1e-300) < slot.tol_f
        slot.calm = slot.calm + 1 if flat and f <= slot.f_cap else 0
        if slot.calm < OBJECTIVE_PATIENCE:
            return None
        if self.host.certifies:
            slot.calm = 0
            if self._due(slot, gn) and self._certified(i, slot, gn):
                return "objective"
            return None
        if not self.host.can_polish():
            return "objective"
        self.start_polish(i, slot, f)
        return None

    def start_polish(self, i: int, slot: SlotState, f: float) -> None:
        """From now on slot i polishes (unit steps, keeping its best point)."""
        slot.polishing = True
        self.host.save_best(i)
        slot.best = slot.good
        slot.f_ref = f

    def end_polish(self, i: int, slot: SlotState, reason: TrainStopReason) -> TrainStopReason:
        """A polishing slot stops at its best point (a non-polishing one where it is)."""
        if slot.polishing:
            self.host.restore_best(i)
            slot.good = slot.best
        return reason

    def _budget(self, i: int, slot: SlotState) -> TrainStopReason | None:
        if slot.k >= slot.max_steps:
            return self.end_polish(i, slot, "max_steps")
        elapsed = time.monotonic() - slot.started
        if slot.timeout_s is not None and elapsed > slot.timeout_s:
            slot.error = (
                f"wall time {elapsed:.3f} s exceeded timeout_s={slot.timeout_s} at step {slot.k}"
            )
            return self.end_polish(i, slot, "timeout")
        return None
