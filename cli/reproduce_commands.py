"""``scalesweep reproduce``: one command per phenomenon of the paper (``examples/``).

``reproduce --list [--json]`` lists the examples; ``reproduce NAME [--scale small|paper]
[--server URL] [--out DIR]`` submits the example's sweeps (to ``--server``, else to an
embedded server on SQLite and local Ray, as ``demo`` does), waits with a progress bar,
writes the figures (``DIR/*.png`` and ``.pdf``, through :mod:`cli.figures`) and
``DIR/verdict.json``, and prints the verdict table. The exit status is 0 when the verdict
agrees, 1 when it does not. The parser is in :mod:`cli.main`; matplotlib and the embedded
server are imported when an example runs (``--list`` needs neither).
"""

from __future__ import annotations

import argparse
import json
import sys
from contextlib import ExitStack
from functools import cached_property, partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cli import output as out
from cli.client_commands import client
from cli.output import progress_bar
from service.client import Client
from service.config import get_settings
from service.errors import SpecError
from service.examples import Example, VerdictRule, all_examples, find_example

if TYPE_CHECKING:
    # the verdicts need the theory (scipy): imported when an example is judged
    from service.analysis.reports import (
        ExponentReport,
        PhaseDiagram,
        PointTheory,
        SpectraSummary,
        SpectrumTheory,
        TheoryReport,
    )
    from service.analysis.verdict import GroupVerdict, Verdict
    from service.records import RunRecord, SweepRecord
    from service.results import Spectrum


def example_rows(examples: list[Example]) -> list[dict[str, Any]]:
    """What ``--list`` shows of each example."""
    return [
        {
            "name": e.name,
            "phenomenon": e.phenomenon,
            "model": e.model,
            "runs_small": e.runs("small"),
            "minutes_small": e.minutes_small,
            "runs_paper": e.runs("paper"),
            "verdict_small": e.verdict_small,
        }
        for e in examples
    ]


class SweepAnswers:
    """One finished sweep and the server's answers about it, each fetched once (the
    verdict and the figures read the same reports)."""

    def __init__(self, c: Client, sweep: SweepRecord, example: Example) -> None:
        self.c, self.sweep, self.rule = c, sweep, example.verdict
        self.name = sweep.name or f"sweep {sweep.id}"

    @cached_property
    def theory(self) -> TheoryReport:
        return self.c.theory(self.sweep.id, x=self.rule.x, by=self.rule.by)

    @cached_property
    def exponents(self) -> ExponentReport:
        return self.c.exponents(self.sweep.id, x=self.rule.x, by=self.rule.by)

    @cached_property
    def phase(self) -> PhaseDiagram:
        return self.c.phase_diagram(self.sweep.id)

    @cached_property
    def spectra_summary(self) -> SpectraSummary:
        return self.c.spectra_summary(self.sweep.id)

    @cached_property
    def runs(self) -> list[RunRecord]:
        return list(self.c.list_runs(self.sweep.id))

    @cached_property
    def spectra(self) -> list[tuple[RunRecord, list[Spectrum], SpectrumTheory | None]]:
        """Every succeeded run with its spectra and their predicted counterparts."""
        return [
            (run, *self.c.spectra_with_theory(run.id))
            for run in self.runs
            if run.status == "succeeded"
        ]


def judge(example: Example, answers: list[SweepAnswers], scale: str) -> Verdict:
    """The verdict of finished sweeps, by the example's rule."""
    from service.analysis.verdict import (
        combine,
        curve_verdicts,
        phase_verdicts,
        spectrum_verdicts,
        tail_verdicts,
        width_verdicts,
    )

    rule = example.verdict
    groups: list[GroupVerdict] = []
    for a in answers:
        if rule.kind == "phase":
            groups += phase_verdicts(rule, a.name, a.phase)
        elif rule.kind == "curve":
            groups += curve_verdicts(rule, a.name, a.theory)
        elif rule.kind == "width":
            groups += width_verdicts(rule, a.name, a.theory)
        elif rule.kind == "tails":
            groups += tail_verdicts(rule, a.name, a.spectra_summary)
        else:
            groups += spectrum_verdicts(rule, a.name, a.sweep.id, a.spectra)
    return combine(example, scale, groups, [a.sweep.id for a in answers])


def write_figures(example: Example, answers: list[SweepAnswers], folder: Path) -> list[Path]:
    """The example's figures for each sweep, as PNG and PDF."""
    from cli import figures
    from service.analysis.verdict import grid_point

    written: list[Path] = []
    for a in answers:
        sw = a.sweep
        for kind in example.figures:
            if kind == "risk":
                fig = figures.risk_figure(sw, a.runs, a.exponents, a.theory)
            elif kind == "theory":
                fig = figures.theory_figure(sw, a.theory, partial(allowance_of, example.verdict))
            elif kind == "width":
                fig = figures.width_figure(sw, a.theory, partial(allowance_of, example.verdict))
            elif kind == "phase":
                fig = figures.phase_figure(sw, a.phase, example.verdict.allowance)
            elif kind == "tails":
                fig = figures.tails_figure(sw, a.spectra_summary)
            else:  # one run per grid point: its first seed's spectrum against the SE's
                drawn: set[tuple[int, int, float, float, float]] = set()
                for run, spectra, theory in a.spectra:
                    if not spectra or grid_point(run.config) in drawn:
                        continue
                    drawn.add(grid_point(run.config))
                    fig = figures.spectrum_figure(run, spectra, theory)
                    for suffix in (".png", ".pdf"):
                        name = f"spectrum-sweep{sw.id}-run{run.id}{suffix}"
                        written.append(figures.save(fig, folder / name))
                continue
            for suffix in (".png", ".pdf"):
                written.append(figures.save(fig, folder / f"{kind}-sweep{sw.id}{suffix}"))
    return written


def allowance_of(rule: VerdictRule, p: PointTheory) -> tuple[float, float]:
    """The verdict's relative allowance at a grid point, below and above (what the theory
    figure draws)."""
    from service.analysis.verdict import allowance_at

    return allowance_at(rule, p.model, p.d, p.n, p.width)


def verdict_table(verdict: Verdict) -> str:
    """The verdict as a text table."""
    rows = [
        [
            g.group,
            g.form or "-",
            _num(g.measured_exponent),
            f"[{g.ci[0]:.3f}, {g.ci[1]:.3f}]" if g.ci else "-",
            _num(g.se_exponent),
            _num(g.heuristic_exponent),
            "yes" if g.raw_agrees else "no",
            "-" if g.raw_agrees else f"{g.allowance:.3g}",
            ("yes" if g.agrees else "no") + ("" if g.expected else " (not expected)"),
        ]
        for g in verdict.groups
    ]
    header = [
        "group", "form", "measured", "95% CI", "state ev.", "heuristic", "raw", "allowance",
        "agrees",
    ]  # fmt: skip
    lines = [out.table(header, rows)]
    lines += [out.safe(f"- {g.group}: {g.why}") for g in verdict.groups]
    sources = sorted({g.allowance_source for g in verdict.groups if not g.raw_agrees})
    lines += [out.safe(f"allowance: {src}") for src in sources if src != "none"]
    lines.append(
        f"\n{verdict.example} ({verdict.scale}): agrees = {str(verdict.agrees).lower()}"
        f" ({verdict.raw_agrees} of {verdict.n_expected} expected groups without any allowance)"
    )
    return "\n".join(lines)


def _num(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}"


def run_example(c: Client, example: Example, scale: str, folder: Path) -> Verdict:
    """Submit, wait, judge, draw, write verdict.json; returns the verdict."""
    submitted = [c.submit(spec) for spec in example.scales[scale]]  # type: ignore[index]
    sweeps = []
    for spec, sub in zip(example.scales[scale], submitted, strict=True):  # type: ignore[index]
        print(f"sweep {sub.id}: {out.safe(spec.name)} ({sub.n_runs} runs)", file=sys.stderr)
        sweeps.append(c.wait_for(sub.id, progress_bar(sys.stderr)))
        print(file=sys.stderr)
    answers = [SweepAnswers(c, sw, example) for sw in sweeps]
    verdict = judge(example, answers, scale)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "verdict.json").write_text(verdict.model_dump_json(indent=2) + "\n")
    for path in write_figures(example, answers, folder):
        print(f"wrote {path}", file=sys.stderr)
    return verdict


def cmd_reproduce(args: argparse.Namespace) -> int:
    """``--list``, or run one example."""
    if args.list:
        rows = example_rows(all_examples())
        if args.json:
            print(json.dumps(rows, indent=2))
        else:
            header = [
                "name",
                "model",
                "runs (small)",
                "minutes (small)",
                "runs (paper)",
                "phenomenon",
            ]
            table = [[r["name"], r["model"], str(r["runs_small"]),
                      _num(r["minutes_small"]),
                      str(r["runs_paper"]), r["phenomenon"]] for r in rows]  # fmt: skip
            print(out.table(header, table))
        return 0
    if not args.name:
        print("error: give an example NAME, or --list", file=sys.stderr)
        return 2
    try:
        example = find_example(args.name)
    except SpecError as exc:
        print(f"error: {out.safe(exc)}", file=sys.stderr)
        return 2
    folder = args.out or Path(example.name)
    try:
        with ExitStack() as stack:
            from cli.runtime import embedded_server

            if args.server:  # a team's server, with SCALESWEEP_API_TOKEN
                c = stack.enter_context(client(args))
            else:  # loopback only, for this command's own client: no tokens
                settings = get_settings().model_copy(update={"auth": "off"})
                url = stack.enter_context(embedded_server(settings, no_ray=args.no_ray))
                c = stack.enter_context(Client(url))
            verdict = run_example(c, example, args.scale, folder)
    except RuntimeError as exc:  # the embedded server did not start
        print(f"scalesweep reproduce: {out.safe(exc)}", file=sys.stderr)
        return 1
    print(verdict_table(verdict))
    print(f"\nfigures and verdict.json in {folder}/")
    return 0 if verdict.agrees else 1
