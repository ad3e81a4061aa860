"""The reproduction examples: one YAML file per phenomenon of the paper (``examples/``).

An example names its phenomenon, the sweeps that show it at each scale (``tiny`` for the
tests, ``small`` for 2 CPU cores in at most 10 minutes, ``paper`` at the paper's sizes), and
how its verdict is read against the state evolution (:class:`VerdictRule`, computed by
``service.analysis.verdict``). ``minutes_small`` is the measured wall time of the small
scale on 2 cores, and ``verdict_small`` what that run concluded, both written after running
it (README, "Reproduce the paper").
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from service.documents import read_document
from service.errors import SpecError
from service.spec import Model, SweepSpec, expand

EXAMPLES_DIR = Path(__file__).resolve().parents[1] / "examples"
"""The repository's ``examples/`` folder (beside the packages)."""
Scale = Literal["tiny", "small", "paper"]
VerdictKind = Literal["phase", "curve", "tails", "spectrum", "width"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Disagreement(_Frozen):
    """A group where THEORY.md does not expect agreement at this size, and why."""

    match: dict[str, float | str]
    """Group values (and ``sweep``: a sweep name) that pick the groups."""
    why: str


class VerdictRule(_Frozen):
    """How the verdict compares measurement and state evolution.

    * ``phase``: the phase diagram's families (measured exponent with its 95% interval, the
      SE exponent of the same form over the same window, the heuristic one);
    * ``curve``: the measured mean excess risk at every grid point against the SE value
      (``allowance`` relative, plus three standard errors of the mean);
    * ``tails``: the heavy-tail exponent of the trained weights against 1 + 1/gamma;
    * ``width``: risk against the width (``x: width``) per n: every grid point as ``curve``
      does, against the finite-width state evolution, and the curve's shape (the best width,
      the narrow advantage, the bump), then how the best width moves with n;
    * ``spectrum``: each run's spectrum against the SE's predicted one (THEORY.md 4.5, 6):
      the number of non-zero values against the predicted support, and the largest values
      (the spikes) against the predicted ones, within ``allowance`` (+ 6/d with ``finite_d``).

    Exponents (``phase``, ``tails``) agree when the SE value lies inside the measured 95%
    interval widened by ``allowance`` (absolute), and agree *raw* when it lies inside the
    interval itself; ``allowance_why`` says where the allowance comes from (every verdict
    reports it beside the raw agreement). ``finite_d`` (``curve``, ``width``, ``spectrum``) adds
    the measured finite-size excess of the network's x x' - I data
    (:mod:`service.theory.finite_size`) to the relative allowance.
    """

    kind: VerdictKind
    x: str = "n"
    by: list[str] | None = None
    allowance: Annotated[float, Field(ge=0, le=1)] = 0.0
    allowance_why: str = ""
    """The reason for ``allowance`` (required when it is not 0)."""
    finite_d: bool = False
    expect_disagree: list[Disagreement] = []

    @model_validator(mode="after")
    def _allowance_has_a_reason(self) -> VerdictRule:
        if self.allowance > 0 and not self.allowance_why.strip():
            raise ValueError("allowance_why: an allowance needs its reason (its source)")
        return self

    @model_validator(mode="after")
    def _width_against_width(self) -> VerdictRule:
        if self.kind == "width" and self.x != "width":
            raise ValueError(f"x: the width verdict reads R against the width, got x={self.x!r}")
        return self

    @model_validator(mode="after")
    def _finite_d_on_values(self) -> VerdictRule:
        if self.finite_d and self.kind not in ("curve", "spectrum", "width"):
            raise ValueError(
                f"finite_d applies to the curve, spectrum and width verdicts, not to {self.kind!r}"
            )
        return self


class Example(_Frozen):
    """One example file."""

    name: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]*$", max_length=64)]
    phenomenon: str
    model: Model
    description: str = ""
    verdict: VerdictRule
    figures: list[Literal["risk", "theory", "phase", "tails", "spectrum", "width"]] = ["risk"]
    minutes_small: float | None = None
    verdict_small: str | None = None
    scales: dict[Scale, list[SweepSpec]]

    @field_validator("scales")
    @classmethod
    def _every_scale(cls, scales: dict[str, list[SweepSpec]]) -> dict[str, list[SweepSpec]]:
        missing = {"tiny", "small", "paper"} - set(scales)
        if missing:
            raise ValueError(f"scales must give tiny, small and paper; missing {sorted(missing)}")
        for scale, sweeps in scales.items():
            if not sweeps:
                raise ValueError(f"scales.{scale} has no sweep")
        return scales

    def runs(self, scale: Scale) -> int:
        """How many runs the scale's sweeps expand to."""

        return sum(sum(1 for _ in expand(s)) for s in self.scales[scale])


def load_example(path: Path) -> Example:
    """An example from its YAML file (``SpecError`` naming the field when it is invalid)."""
    data = read_document(path)  # SpecError: not UTF-8, not YAML, a key given twice
    try:
        return Example.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise SpecError(f"{path.name}: {where}: {err['msg']}", field=where) from exc


def all_examples(folder: Path = EXAMPLES_DIR) -> list[Example]:
    """Every example in ``folder``, by name."""
    return sorted((load_example(p) for p in folder.glob("*.yaml")), key=lambda e: e.name)


def find_example(name: str, folder: Path = EXAMPLES_DIR) -> Example:
    """The example called ``name`` (``SpecError`` listing the known ones otherwise)."""
    examples = all_examples(folder)
    for example in examples:
        if example.name == name:
            return example
    known = ", ".join(e.name for e in examples)
    raise SpecError(f"no example {name!r}; known: {known}", field="example")
