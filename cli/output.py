"""Text output of the ``scalesweep`` CLI: status lines, run tables (table, CSV, JSON), the
answers of the queries as tables, token lists, and the progress bar.

Every string that reaches a terminal as text goes through :func:`safe`: names, tags, errors
and whatever else a user or a server supplied, with control characters (ESC, BEL, CR, LF, the
other C0 and C1 controls) and the invisible bidirectional controls written as visible
escapes, so that no ANSI sequence or reordering reaches the terminal. :func:`table` applies it
to every cell; JSON is written with :func:`json_text` (``json.dumps``, ASCII only). CSV is
data (the export's format) and is written as it is.

Imports nothing heavy: the models are only annotations here, the export's rows are imported
by the functions that write them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from service.text import escape_controls

if TYPE_CHECKING:
    import pydantic

    from service.analysis.reports import (
        ExponentReport,
        GroupFit,
        PhaseDiagram,
        PointTheory,
        SpectraSummary,
        TheoryReport,
    )
    from service.client import Progress
    from service.records import RunRecord, SweepRecord
    from service.results import RunResult
    from service.spec import RunConfig
    from service.storage.tokens import TokenRow


def safe(value: object) -> str:
    """``value`` as text fit for a terminal: every control character (C0, C1, DEL) and
    bidirectional control written as a visible escape (``\\x1b``, ``\\n``, ``\\u202e``);
    other text, right-to-left letters included, unchanged (:func:`service.text.escape_controls`)."""
    return escape_controls(str(value))


def json_text(model: pydantic.BaseModel, indent: int | None = 2) -> str:
    """A pydantic model as JSON with every non-ASCII character escaped (``json.dumps``):
    nothing in it can act on a terminal."""
    return json.dumps(model.model_dump(mode="json"), indent=indent)


TABLE_COLUMNS = (
    "run_id",
    "status",
    "d",
    "n",
    "weight_decay",
    "seed",
    "excess_risk",
    "converged",
    "steps",
    "stop_reason",
)


def validation_message(source: Path | str, exc: pydantic.ValidationError) -> str:
    """One line per invalid field, naming it."""
    lines = [f"error: {safe(source)} is not a valid sweep spec:"]
    for err in exc.errors(include_url=False):
        loc = ".".join(str(p) for p in err["loc"]) or "(spec)"
        lines.append(f"  {safe(loc)}: {safe(err['msg'])}")
    return "\n".join(lines)


def quoted(name: str) -> str:
    """A name in quotes, safe for a terminal (:func:`safe`)."""
    return repr(safe(name))


def status_text(sweep: SweepRecord) -> str:
    """A few lines describing a sweep (the name and tags through :func:`safe`)."""
    counts = ", ".join(f"{k} {v}" for k, v in sorted(sweep.counts.items()) if v) or "no runs"
    finished = sweep.finished_at.isoformat() if sweep.finished_at else "-"
    tags = f"  tags {', '.join(sweep.tags)}" if sweep.tags else ""
    archived = "  archived" if sweep.archived else ""
    head = f"sweep {sweep.id} {quoted(sweep.name)}: {sweep.status}, {sweep.n_runs} runs ({counts})"
    tail = f"created {sweep.created_at.isoformat()}  finished {finished}{tags}{archived}"
    return f"{safe(head)}\n  {safe(tail)}"


def sweeps_table(sweeps: Sequence[SweepRecord]) -> str:
    """One line per sweep: id, name, model, status, runs ended of all, tags."""
    rows = []
    for sw in sweeps:
        ended = sum(sw.counts.get(s, 0) for s in ("succeeded", "failed", "cancelled"))
        rows.append(
            [
                str(sw.id),
                sw.name or "-",
                sw.spec.model,
                sw.status + (" (archived)" if sw.archived else ""),
                f"{ended}/{sw.n_runs}",
                ",".join(sw.tags) or "-",
            ]
        )
    header = ["id", "name", "model", "status", "ended", "tags"]
    return table(header, rows) + f"\n{len(sweeps)} sweeps\n"


def runs_csv(runs: Sequence[RunRecord]) -> str:
    """Every run as CSV with the export's columns (``service.export``: the DESIGN names)."""
    from service.export import csv_chunks

    return "".join(csv_chunks(runs))


def runs_json(runs: Sequence[RunRecord]) -> str:
    """A JSON array of the run records, as the API serves them."""
    return json.dumps([r.model_dump(mode="json") for r in runs], indent=2) + "\n"


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """An aligned text table; every cell through :func:`safe`."""
    header = [safe(h) for h in header]
    rows = [[safe(c) for c in r] for r in rows]
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(line.rstrip() for line in lines) + "\n"


def runs_table(runs: Sequence[RunRecord]) -> str:
    """An aligned text table of the main columns."""
    from service.export import row_of

    rows = [[_cell(row[k]) for k in TABLE_COLUMNS] for row in map(row_of, runs)]
    return table(TABLE_COLUMNS, rows) + f"{len(runs)} runs\n"


def exponent_table(report: ExponentReport) -> str:
    """One line per group: the chosen form, its exponent with the 95% interval, and counts."""
    header = [
        *report.by, "form", "exponent", "95% CI", "prefactor", "plateau", "breaks",
        "points", "runs", "left_out", "pending",
    ]  # fmt: skip
    rows = []
    for g in report.groups:
        ci = f"[{g.exponent_ci[0]:.3g}, {g.exponent_ci[1]:.3g}]" if g.exponent_ci else "-"
        breaks = ",".join(f"{b:.4g}" for b in g.breaks) or "-"
        rows.append(
            [
                *(_cell(g.group[a]) for a in report.by),
                g.form or "-",
                _cell(g.exponent) if g.error is None else f"- ({g.error})",
                ci,
                _cell(g.prefactor),
                _cell(g.plateau),
                breaks,
                str(g.n_points),
                str(g.n_runs),
                str(g.n_left_out),
                str(g.n_pending),
            ]
        )
    title = (
        f"sweep {report.sweep_id}: R ~ C {report.x}^-exponent; form chosen by {report.selection}"
    )

    def label(g: GroupFit) -> str:
        return ", ".join(f"{a}={_cell(g.group[a])}" for a in report.by) or "all"

    by_method: dict[str, list[str]] = {}
    for g in report.groups:
        if g.ci_method:
            by_method.setdefault(g.ci_method, []).append(label(g))
    notes = [f"CI of {'; '.join(labels)}: {m}" for m, labels in by_method.items()]
    notes += [f"{label(g)}: {n}" for g in report.groups for n in g.selection_notes]
    text = safe(title) + "\n" + (table(header, rows) if rows else "no runs\n")
    return text + "".join(f"{safe(n)}\n" for n in notes)


def theory_table(report: TheoryReport) -> str:
    """Per grid point: measured mean +- standard error next to the state evolution's R; then
    the exponents (one estimator, the same form for both)."""
    header = ["model", "d", "n", "alpha", "lambda", "gamma", "noise", "seeds", "R measured",
              "+- std. err.", "R state ev.", "rel diff", "df", "support", "zeta"]  # fmt: skip
    rows = []
    for p in report.points:
        pred = p.predicted or {}
        rows.append(
            [p.model, str(p.d), str(p.n), _cell(p.alpha), _cell(p.weight_decay), _cell(p.gamma),
             _cell(p.noise), str(p.n_seeds), _cell(p.measured_mean), _cell(p.measured_se),
             _cell(pred.get("excess_risk")) if pred else f"- ({p.prediction_error})",
             f"{p.rel_diff:+.1%}" if p.rel_diff is not None else "-",
             _cell(pred.get("df")), _cell(pred.get("support")), _cell(pred.get("zeta"))]
        )  # fmt: skip
    text = f"sweep {report.sweep_id}: state evolution vs measurement\n" + table(header, rows)
    gheader = [*report.by, f"{report.x} window", "form", "measured exponent", "95% CI",
               "state ev. exponent", "points"]  # fmt: skip
    grows = []
    for g in report.groups:
        window = f"{g.x_window[0]:.4g}-{g.x_window[1]:.4g}" if g.x_window else "-"
        ci = f"[{g.measured_ci[0]:.3g}, {g.measured_ci[1]:.3g}]" if g.measured_ci else "-"
        grows.append(
            [*(_cell(g.group[a]) for a in report.by), window, g.form or "-",
             _cell(g.measured_exponent) if g.error is None else f"- ({g.error})", ci,
             _cell(g.predicted_exponent), str(g.n_points)]
        )  # fmt: skip
    text += "\nexponents over the same window, the same form\n" + table(gheader, grows)
    if report.estimator:
        text += f"estimator: {safe(report.estimator)}\n"
    if report.note:
        text += f"note: {safe(report.note)}\n"
    return text


def phase_table(report: PhaseDiagram) -> str:
    """One line per family (power l of lambda ~ n^-l)."""
    header = ["l", "measured", "95% CI", "form", "state ev.", "heuristic", "regime", "df/n",
              "runs"]  # fmt: skip
    rows = []
    for f in report.families:
        ci = f"[{f.measured_ci[0]:.3g}, {f.measured_ci[1]:.3g}]" if f.measured_ci else "-"
        rows.append(
            [_cell(f.decay),
             _cell(f.measured_exponent) if f.error is None else f"- ({f.error})", ci,
             f.measured_form or "-", _cell(f.se_exponent), _cell(f.heuristic_exponent),
             f.regime or "-", _cell(f.df_over_n), str(f.n_runs)]
        )  # fmt: skip
    title = f"sweep {report.sweep_id}: exponent of R vs {safe(report.x)} per family lambda ~ n^-l\n"
    return title + table(header, rows) + f"regimes: {safe(report.regime_rule)}\n"


def spectra_table(report: SpectraSummary) -> str:
    """Per grid point: excess risk next to the tail and rank exponents."""
    header = ["d", "n", "lambda", "gamma", "noise", "runs", "R", "tail alpha", "+- std. err.",
              "tail fits", "n_tail", "rank exponent", "1+1/gamma"]  # fmt: skip
    rows = [
        [str(p.d), str(p.n), _cell(p.weight_decay), _cell(p.gamma), _cell(p.noise),
         str(p.n_runs), _cell(p.excess_risk_mean),
         _cell(p.tail_alpha_mean) if p.n_tail_fits else "no fit",
         _cell(p.tail_alpha_se), f"{p.n_tail_fits} of {p.n_runs}", _cell(p.n_tail_mean),
         _cell(p.rank_exponent_mean), _cell(p.predicted_alpha_ww)]
        for p in report.points
    ]  # fmt: skip
    return f"sweep {report.sweep_id}: spectra ({safe(report.note)})\n" + table(header, rows)


TOKEN_COLUMNS = ("id", "name", "scope", "team", "created", "last_used", "revoked")


def _when(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat(timespec="seconds")


def token_row(token: TokenRow) -> dict[str, Any]:
    """One token as the CLI shows it: never the token itself (only its hash is stored)."""
    return {
        "id": token.id,
        "name": token.name,
        "scope": token.scope,
        "team": token.team,
        "created": _when(token.created_at),
        "last_used": _when(token.last_used_at),
        "revoked": _when(token.revoked_at),
    }


def tokens_table(tokens: Sequence[TokenRow]) -> str:
    """An aligned table of tokens (id, name, scope, team, created, last used, revoked)."""
    rows = [[_cell(token_row(t)[k]) for k in TOKEN_COLUMNS] for t in tokens]
    return table(TOKEN_COLUMNS, rows) + f"{len(tokens)} tokens\n"


def tokens_json(tokens: Sequence[TokenRow]) -> str:
    """A JSON array of tokens (never the token itself)."""
    return json.dumps([token_row(t) for t in tokens], indent=2) + "\n"


def progress_bar(stream: TextIO, width: int = 30) -> Callable[[Progress], None]:
    """A callback drawing ``[#####.....] done/total`` on one line of ``stream``."""

    def draw(p: Progress) -> None:
        filled = width * p.done // p.n_runs if p.n_runs else width
        counts = " ".join(f"{k}={v}" for k, v in sorted(p.counts.items()) if v)
        bar = "#" * filled + "." * (width - filled)
        line = safe(f"[{bar}] {p.done}/{p.n_runs} {p.status} {counts}")
        stream.write(f"\r{line}\x1b[K")  # the bar's own controls: back to the start, clear
        stream.flush()

    return draw


def result_document(cfg: RunConfig, result: RunResult) -> dict[str, Any]:
    """One JSON object: the configuration, then the result (metrics, spectra, curve)."""
    return {
        "config": cfg.model_dump(mode="json"),
        "alpha": cfg.alpha,
        **result.model_dump(mode="json"),
    }


def run_summary(cfg: RunConfig, result: RunResult) -> str:
    """A few lines describing one run (``run-one`` without ``--json``)."""
    lines = [
        f"{cfg.model} d={cfg.d} n={cfg.n} (alpha={cfg.alpha:.4g}) lambda={cfg.weight_decay:g} "
        f"seed={cfg.seed} optimizer={cfg.training.optimizer}: {result.status}"
    ]
    if result.error:
        lines.append(f"  {error_line(result.error)}")
    m = result.metrics
    if m is not None:
        lines.append(
            f"  excess_risk={m.excess_risk:.6g} train_loss={m.train_loss:.6g} "
            f"objective={m.objective:.10g}"
        )
        lines.append(
            f"  converged={m.converged} stop_reason={m.stop_reason} steps={m.steps} "
            f"grad_norm={m.grad_norm:.3g} duality_gap={m.duality_gap:.3g} "
            f"wall_time_s={m.wall_time_s:.3f} device={m.device}"
        )
        if m.test_error is not None:
            lines.append(f"  test_error={m.test_error:.6g} +- {m.test_error_se:.2g}")
    for sp in result.spectra:
        tf = sp.tail_fit
        tail = (
            f"alpha={tf.alpha:.3f} [{tf.alpha_ci[0]:.3f}, {tf.alpha_ci[1]:.3f}] n_tail={tf.n_tail}"
            if tf
            else f"no tail fit ({sp.tail_fit_error})"
        )
        rank = f"rank exponent={sp.rank_fit.exponent:.3f}" if sp.rank_fit else "no rank fit"
        lines.append(f"  spectrum {sp.kind}: {len(sp.values)} values, {tail}, {rank}")
    return "\n".join(safe(line) for line in lines)


def error_line(message: str) -> str:
    """``error: MESSAGE`` once, whether or not the message starts with it already (a run's
    error from an exception reads ``error: RuntimeError: ...``), through :func:`safe`."""
    return "error: " + safe(message.removeprefix("error: "))


SE_OF_MEAN = 3.0
"""A measured point matches the theory within this many standard errors of its seed mean
(as in the verdicts, ``service.analysis.verdict``)."""


def theory_words(theory: TheoryReport, exponents: ExponentReport) -> tuple[str, list[bool]]:
    """The comparison with the state-evolution theory in plain words, one paragraph per group:
    the measured exponent with its 95% interval and the form's shape, the theory's exponent
    over the same window and whether it lies inside that interval, and how close the
    measured R is to the theory's at each x. Returns the text and, per group, whether it
    agrees (the theory's exponent inside the measured interval)."""
    fits = {tuple(sorted(g.group.items())): g for g in exponents.groups}
    x = safe(theory.x)
    lines = [f"Against the state-evolution theory (THEORY.md), R ~ C {x}^-exponent:"]
    agrees: list[bool] = []
    for g in theory.groups:
        label = ", ".join(f"{a.replace('_', ' ')} {_cell(g.group.get(a))}" for a in theory.by)
        label = safe(label or "all runs")
        ci, beta, predicted = g.measured_ci, g.measured_exponent, g.predicted_exponent
        if g.error is not None or ci is None or beta is None or predicted is None:
            why = g.error or "no measured or predicted exponent"
            lines.append(f"  {label}: no comparison ({safe(why)})")
            agrees.append(False)
            continue
        inside = ci[0] <= predicted <= ci[1]
        agrees.append(inside)
        shape = ""
        fit = fits.get(tuple(sorted(g.group.items())))
        if g.form == "plateau" and fit is not None and fit.plateau is not None:
            shape = f", levelling off at R = {fit.plateau:.3g}"
        elif (g.form or "").startswith("broken") and fit is not None and fit.breaks:
            where = ", ".join(f"{b:.3g}" for b in fit.breaks)
            shape = f" (the slope after a break at {x} = {where})"
        window = f" over {x} = {g.x_window[0]:g} to {g.x_window[1]:g}" if g.x_window else ""
        verdict = "inside it: agrees" if inside else "outside it: does not agree"
        lines.append(
            f"  {label}: measured exponent {beta:.3g} (95% interval {ci[0]:.3g} to {ci[1]:.3g})"
            f"{shape};\n    the theory's is {predicted:.3g}{window}, {verdict}."
        )
        points = [p for p in theory.points if all(getattr(p, a, None) == g.group.get(a)
                                                   for a in theory.by)]  # fmt: skip
        compared = [p for p in points if p.rel_diff is not None]
        if compared:
            worst = max(abs(p.rel_diff or 0.0) for p in compared)
            close = sum(1 for p in compared if _within_se(p))
            lines.append(
                f"    R itself: within {worst:.0%} of the theory's at each of the "
                f"{len(compared)} values of {x} ({close} within 3 standard errors)."
            )
    if theory.note:
        lines.append(f"  note: {safe(theory.note)}")
    return "\n".join(lines), agrees


def _within_se(p: PointTheory) -> bool:
    """The point's seed mean within :data:`SE_OF_MEAN` standard errors of the theory's R."""
    predicted = (p.predicted or {}).get("excess_risk")
    if p.measured_mean is None or p.measured_se is None or not isinstance(predicted, float):
        return False
    return abs(p.measured_mean - predicted) <= SE_OF_MEAN * p.measured_se
