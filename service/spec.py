"""The sweep spec and the run configuration: the contract shared by api, service and workers.

A :class:`SweepSpec` is what a researcher submits (DESIGN.md, "the sweep spec");
:func:`expand` turns it, deterministically, into :class:`RunConfig` objects, one per
training run. A run's identity is :meth:`RunConfig.config_hash`, the sha256 of its
canonical JSON (seed included), which makes stored results idempotent and lets finished
runs be reused across sweeps.

Everything here is frozen pydantic, imports neither torch, ray, SQLAlchemy nor FastAPI, and
is shipped to Ray workers as is.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import sys
from collections.abc import Iterator
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    field_validator,
    model_validator,
)

from service.text import check_text

Model = Literal["quadratic", "diagonal"]
Optimizer = Literal["lbfgs", "gd", "adam", "convex"]
DType = Literal["float32", "float64"]
Device = Literal["auto", "cpu", "cuda"]

FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
PositiveFiniteFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]
NonNegativeFiniteFloat = Annotated[float, Field(ge=0, allow_inf_nan=False)]

MAX_INT = 2**31 - 1
"""The largest value of every integer field (d, n, seed, rank, max_steps, curve_every,
test_samples, a range's num; widths have :data:`MAX_WIDTH`): SQL INTEGER's, so that SQLite
and PostgreSQL accept the same specs. What a deployment can actually run is decided by
admission control (:mod:`service.resources`), with the estimate in the answer."""
MAX_RESTARTS = 16
"""The most restarts a spec may ask for (a deployment may allow fewer)."""
MAX_WIDTH = 1_000_000
"""The largest hidden width m (``training.width``, ``grid.width``, and the widths
``grid.width_ratio`` gives): a width x d weight matrix beyond it is no network anyone trains
here, and admission control would refuse it anyway."""
PositiveInt = Annotated[int, Field(ge=1, le=MAX_INT)]
"""An integer in [1, 2**31 - 1]."""
NonNegativeInt = Annotated[int, Field(ge=0, le=MAX_INT)]
"""An integer in [0, 2**31 - 1]."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TeacherSpec(_Frozen):
    """The target: power-law spectrum (THEORY.md section 1) and label noise."""

    gamma: PositiveFiniteFloat = 1.0
    """Power-law exponent of the teacher coefficients / eigenvalues."""
    rank: PositiveInt | None = None
    """Number of non-zero teacher coefficients (diagonal) or eigenvalues (quadratic); default d."""
    noise: NonNegativeFiniteFloat = 0.0
    """Label-noise variance Delta."""
    signed: bool = False
    """Quadratic only: teacher eigenvalues alternate in sign (needs ``second_layer: signed``)."""


class TrainingSpec(_Frozen):
    """How a run is trained (the network's own parameters, or the convex equivalent)."""

    optimizer: Optimizer = "lbfgs"
    width: Annotated[int, Field(ge=1, le=MAX_WIDTH)] | None = None
    """Quadratic: hidden width m, every neuron counted (a signed second layer has
    ``ceil(m/2)`` positive ones); default d (2d for a signed second layer); at most
    1,000,000. Widths above d are allowed (m >= d is the convex problem). A sweep over widths
    gives ``grid.width`` or ``grid.width_ratio`` instead (expansion sets this field)."""
    second_layer: Literal["positive", "signed"] = "positive"
    max_steps: PositiveInt = 20000
    tol: Annotated[float, Field(gt=0, lt=1, allow_inf_nan=False)] = 1e-8
    """Stop when the relative objective change per step falls below tol, or the gradient
    norm below sqrt(tol) (see workers.train); ``converged`` also needs the duality-gap
    certificate of the equivalent convex problem to be small."""
    dtype: DType = "float64"
    device: Device = "auto"
    lr: PositiveFiniteFloat | None = None
    """Fixed learning rate for gd/adam; default: chosen by backtracking (gd) or adaptively."""
    init_scale: PositiveFiniteFloat = 1e-2
    """Standard deviation of the i.i.d. Gaussian initialisation of the parameters."""
    timeout_s: PositiveFiniteFloat | None = None
    """Wall-time limit of one run; a run that exceeds it fails with stop_reason 'timeout'."""
    restarts: Annotated[int, Field(ge=1, le=MAX_RESTARTS)] | None = None
    """A network narrower than its convex solution's rank (a non-convex problem): how many
    trainings from independent initialisations must agree (this one included); default
    ``SCALESWEEP_WIDTH_RESTARTS``, at most ``SCALESWEEP_WIDTH_RESTARTS_MAX``."""


class MeasureSpec(_Frozen):
    """What is measured besides the metrics."""

    spectrum: bool = True
    curve_every: NonNegativeInt = 0
    """Record (step, train loss, excess risk) every k steps; 0 = off."""
    test_samples: NonNegativeInt = 0
    """If > 0, also measure the test error on that many fresh samples."""


class RunConfig(_Frozen):
    """One training run: everything needed to reproduce it bit for bit."""

    model: Model
    d: PositiveInt
    n: PositiveInt
    weight_decay: NonNegativeFiniteFloat
    seed: NonNegativeInt = 0
    teacher: TeacherSpec = TeacherSpec()
    training: TrainingSpec = TrainingSpec()
    measure: MeasureSpec = MeasureSpec()
    link_power: FiniteFloat | None = None
    """When weight_decay comes from a ``link`` (lambda = coef * n^power): that power."""

    @model_validator(mode="after")
    def _check(self) -> RunConfig:
        if self.teacher.rank is not None and self.teacher.rank > self.d:
            raise ValueError(f"teacher.rank ({self.teacher.rank}) must be <= d ({self.d})")
        if self.teacher.signed and self.model != "quadratic":
            raise ValueError("teacher.signed applies to the quadratic model only")
        if (
            self.model == "quadratic"
            and self.teacher.signed
            and self.training.second_layer != "signed"
        ):
            raise ValueError("teacher.signed needs training.second_layer: signed")
        return self

    @property
    def alpha(self) -> float:
        """Sample ratio: n/d^2 (quadratic) or n/d (diagonal)."""
        return self.n / samples_per_unit(self.model, self.d)

    @property
    def width(self) -> int:
        """Hidden width of the network (quadratic); d for the diagonal net."""
        if self.model == "diagonal":
            return self.d
        if self.training.width is not None:
            return self.training.width
        return 2 * self.d if self.training.second_layer == "signed" else self.d

    def batch_shape(self) -> tuple[object, ...]:
        """What runs must share to train as one batched program: model, d, n, width, second
        layer, dtype, device, optimizer and whether gd has a fixed learning rate (the data,
        weight decay, seed, teacher and budgets may differ)."""
        t = self.training
        fixed_lr = t.optimizer == "gd" and t.lr is not None
        return (
            self.model, self.d, self.n, self.width, t.second_layer, t.dtype, t.device,
            t.optimizer, fixed_lr,
        )  # fmt: skip

    def canonical_json(self) -> str:
        """Canonical JSON: sorted keys, no whitespace, every default written out."""
        return json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))

    def config_hash(self) -> str:
        """sha256 of the canonical JSON: the run's identity (seed included)."""
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()


# --------------------------------------------------------------------------------------
# Sweep spec


class Space(_Frozen):
    """A range written as ``{geomspace: [lo, hi], num}`` or ``{linspace: [lo, hi], num}``."""

    geomspace: tuple[PositiveFiniteFloat, PositiveFiniteFloat] | None = None
    linspace: tuple[FiniteFloat, FiniteFloat] | None = None
    num: Annotated[int, Field(ge=1, le=100_000)]
    """Number of points (at most 100,000: a sweep is capped far below that anyway)."""

    @model_validator(mode="after")
    def _one_kind(self) -> Space:
        if (self.geomspace is None) == (self.linspace is None):
            raise ValueError("give exactly one of geomspace or linspace")
        return self

    def values(self) -> list[float]:
        """The points of the range (endpoints included)."""
        if self.geomspace is not None:
            pts = np.geomspace(*self.geomspace, num=self.num)
        else:
            assert self.linspace is not None
            pts = np.linspace(*self.linspace, num=self.num)
        return [float(v) for v in pts]


def _axis_kind(value: Any) -> str:
    """Which form an axis is written in: a ``range`` (a mapping or a Space) or ``values``."""
    return "range" if isinstance(value, dict | Space) else "values"


Axis = Annotated[
    Annotated[list[FiniteFloat], Tag("values")] | Annotated[Space, Tag("range")],
    Discriminator(_axis_kind),
]
"""Values ``[a, b, ...]`` or a range ``{geomspace|linspace: [lo, hi], num}``: the form is told
by its shape, so an error names the field once (``grid.n.values.0``, ``grid.n.range.num``),
not every form it might have been."""
IntAxis = Annotated[
    Annotated[list[PositiveInt], Tag("values")] | Annotated[Space, Tag("range")],
    Discriminator(_axis_kind),
]
WidthAxis = Annotated[
    Annotated[list[Annotated[int, Field(ge=1, le=MAX_WIDTH)]], Tag("values")]
    | Annotated[Space, Tag("range")],
    Discriminator(_axis_kind),
]
"""Hidden widths: whole numbers in [1, MAX_WIDTH], or a range whose points are rounded."""


def _axis_values(axis: Axis | list[int] | None) -> list[float]:
    if axis is None:
        return []
    return axis.values() if isinstance(axis, Space) else [float(v) for v in axis]


class Grid(_Frozen):
    """The Cartesian product of every axis (DESIGN.md)."""

    d: IntAxis
    n: Axis | None = None
    """Sample sizes: whole numbers (a range's points are rounded), or give ``alpha``."""
    alpha: Axis | None = None
    weight_decay: Axis | None = None
    seed: list[NonNegativeInt] = [0]
    gamma: Axis | None = None
    """Optional: several teacher exponents (overrides teacher.gamma)."""
    noise: Axis | None = None
    """Optional: several label-noise variances (overrides teacher.noise)."""
    width: WidthAxis | None = None
    """Optional, quadratic only: hidden widths m (overrides ``training.width``, which must then
    be left out): whole numbers in [1, 1,000,000]; a range's points are rounded and widths
    that round to the same integer are one. Or give ``width_ratio``."""
    width_ratio: Axis | None = None
    """Optional, quadratic only: widths as ratios m/d > 0; at each d the width is
    ``max(1, round(ratio * d))`` (ratios that give the same width at a d are one run)."""

    @model_validator(mode="after")
    def _check(self) -> Grid:
        if (self.n is None) == (self.alpha is None):
            raise ValueError("give exactly one of grid.n or grid.alpha")
        if self.width is not None and self.width_ratio is not None:
            raise ValueError("give at most one of grid.width or grid.width_ratio")
        for name in GRID_AXES:
            axis = getattr(self, name)
            if axis is None:
                continue
            vals = _axis_values(axis)
            if not vals:
                raise ValueError(f"grid.{name} is empty")
            if len(set(vals)) != len(vals):
                raise ValueError(f"grid.{name} has repeated values")
        for name in ("n", "alpha", "gamma"):
            if any(v <= 0 for v in _axis_values(getattr(self, name))):
                raise ValueError(f"grid.{name} values must be > 0")
        if isinstance(self.n, list):
            odd = [v for v in self.n if not float(v).is_integer()]
            if odd:
                raise ValueError(
                    "grid.n values are numbers of samples and must be whole numbers; got "
                    f"{odd[0]!r} (a geomspace/linspace range is rounded; for a ratio use "
                    "grid.alpha)"
                )
        for name in ("d", "n"):
            big = [v for v in _axis_values(getattr(self, name)) if round(v) > MAX_INT]
            if big:
                raise ValueError(f"grid.{name} values must be at most {MAX_INT}; got {big[0]:g}")
        if any(round(v) < 1 for v in _axis_values(self.n)):
            raise ValueError("grid.n values must round to at least 1 sample")
        for name in ("weight_decay", "noise"):
            if any(v < 0 for v in _axis_values(getattr(self, name))):
                raise ValueError(f"grid.{name} values must be >= 0")
        if any(v < 1 for v in _axis_values(self.d)):
            raise ValueError("grid.d values must be >= 1")
        self._check_widths()
        return self

    def _check_widths(self) -> None:
        """Every width the grid gives is a whole number in [1, MAX_WIDTH] (ValueError naming
        ``grid.width`` or ``grid.width_ratio``)."""
        if isinstance(self.width, Space):
            pts = self.width.values()
            bad = [v for v in pts if not 1 <= round(v) <= MAX_WIDTH]
            if bad:
                raise ValueError(
                    f"grid.width range points must round to widths in [1, {MAX_WIDTH}]; "
                    f"got {bad[0]:g}"
                )
        ratios = _axis_values(self.width_ratio)
        if any(r <= 0 for r in ratios):
            raise ValueError("grid.width_ratio values must be > 0 (m/d)")
        if ratios:
            d_max, r_max = max(_axis_values(self.d)), max(ratios)
            if round(r_max * d_max) > MAX_WIDTH:
                raise ValueError(
                    f"grid.width_ratio {r_max:g} gives width {round(r_max * d_max)} at "
                    f"d = {d_max:g}, more than {MAX_WIDTH}"
                )


GRID_AXES = (
    "d", "n", "alpha", "weight_decay", "seed", "gamma", "noise", "width", "width_ratio",
)  # fmt: skip
"""Every axis a grid may have."""


class LinkSpec(_Frozen):
    """lambda = coef * (of)^power: an axis defined as a power of another (a scaling path)."""

    coef: PositiveFiniteFloat
    of: Literal["n", "alpha", "d"] = "n"
    power: FiniteFloat | list[FiniteFloat]

    @field_validator("power")
    @classmethod
    def _nonempty(cls, v: float | list[float]) -> float | list[float]:
        if isinstance(v, list) and (not v or len(set(v)) != len(v)):
            raise ValueError("power must be a non-empty list of distinct values")
        return v

    def powers(self) -> list[float]:
        """Every power, one family each."""
        return list(self.power) if isinstance(self.power, list) else [self.power]


class SweepSpec(_Frozen):
    """A sweep as submitted (POST /v1/sweeps, or YAML for the CLI)."""

    schema_version: Literal[1] = 1
    name: Annotated[str, Field(max_length=200)] = ""
    model: Model
    teacher: TeacherSpec = TeacherSpec()
    grid: Grid
    link: dict[Literal["weight_decay"], LinkSpec] | None = None
    training: TrainingSpec = TrainingSpec()
    measure: MeasureSpec = MeasureSpec()
    recompute: bool = False

    @field_validator("name")
    @classmethod
    def _printable(cls, name: str) -> str:
        return check_text(name, "name")

    @model_validator(mode="after")
    def _check(self) -> SweepSpec:
        linked = self.link is not None and "weight_decay" in self.link
        if linked and self.grid.weight_decay is not None:
            raise ValueError("weight_decay is linked: remove it from grid")
        if not linked and self.grid.weight_decay is None:
            raise ValueError("give grid.weight_decay or link.weight_decay")
        if self.teacher.rank is not None and self.teacher.rank > min(_axis_values(self.grid.d)):
            raise ValueError("teacher.rank must be <= every grid.d value")
        width_axis = width_axis_name(self.grid)
        if width_axis is not None and self.model != "quadratic":
            raise ValueError(
                f"grid.{width_axis} applies to the quadratic model only (the diagonal "
                "network's width is d)"
            )
        if width_axis is not None and self.training.width is not None:
            raise ValueError(
                f"give the width once: grid.{width_axis} or training.width, not both "
                "(remove training.width)"
            )
        for d in _dimensions(self.grid):
            ns = sample_sizes(self, d)
            if self.grid.alpha is not None and max(ns) > MAX_INT:
                raise ValueError(
                    f"grid.alpha gives n = {max(ns)} samples at d = {d}, more than {MAX_INT}"
                )
            if linked:
                for n in ns:
                    linked_weight_decays(self, d, n)  # ValueError naming the power
        return self

    def n_runs(self) -> int:
        """Number of runs the grid expands to (without expanding it)."""
        g = self.grid
        sizes = [
            len(_axis_values(g.n if g.n is not None else g.alpha)),
            len(self.link["weight_decay"].powers())
            if self.link is not None and "weight_decay" in self.link
            else len(_axis_values(g.weight_decay)),
            len(g.seed),
            max(1, len(_axis_values(g.gamma))),
            max(1, len(_axis_values(g.noise))),
        ]
        per_d = math.prod(sizes)
        if g.width_ratio is None:
            n_widths = len(widths(self, 1)) if g.width is not None else 1
            return len(_axis_values(g.d)) * n_widths * per_d
        return sum(len(widths(self, d)) for d in _dimensions(g)) * per_d


def samples_per_unit(model: Model, d: int) -> int:
    """The unit of alpha = n / unit: d^2 (quadratic) or d (diagonal)."""
    return d * d if model == "quadratic" else d


def convex_dimension(model: Model, d: int) -> int:
    """Parameters of the convex problem a network's minimum solves: d (theta) or d(d+1)/2
    (symmetric S)."""
    return d * (d + 1) // 2 if model == "quadratic" else d


def unique_minimizer(model: Model, d: int, n: int, weight_decay: float) -> bool:
    """False where the objective has many global minima: weight_decay = 0 with fewer samples
    than parameters of the convex problem (every interpolating solution is a minimum). With
    a positive weight decay the LASSO's minimiser is unique for data in general position,
    which Gaussian inputs are with probability 1 (Tibshirani 2013); the trace-penalised
    sensing problem is treated alike."""
    return not (weight_decay == 0 and n < convex_dimension(model, d))


def sample_size(model: Model, d: int, alpha: float) -> int:
    """n from alpha: n = alpha d^2 (quadratic) or alpha d (diagonal), rounded, at least 1."""
    return max(1, round(alpha * samples_per_unit(model, d)))


def _dimensions(grid: Grid) -> list[int]:
    """The grid's input dimensions, as integers, in order."""
    return [int(v) for v in _axis_values(grid.d)]


def sample_sizes(spec: SweepSpec, d: int) -> list[int]:
    """The distinct sample sizes of the sweep at dimension ``d``, in order (``grid.n``
    rounded, or ``alpha`` times d or d^2; alphas that round to the same n are one)."""
    g = spec.grid
    if g.n is not None:
        ns = [int(round(v)) for v in _axis_values(g.n)]
    else:
        ns = [sample_size(spec.model, d, a) for a in _axis_values(g.alpha)]
    return list(dict.fromkeys(ns))


def width_axis_name(grid: Grid) -> str | None:
    """``width`` or ``width_ratio``: the grid's width axis (None: the width is
    ``training.width``, or the model's default)."""
    if grid.width is not None:
        return "width"
    return "width_ratio" if grid.width_ratio is not None else None


def widths(spec: SweepSpec, d: int) -> list[int | None]:
    """The distinct hidden widths of the sweep at dimension ``d``, in order: ``grid.width``
    (a range's points rounded), ``max(1, round(ratio * d))`` of ``grid.width_ratio`` (widths
    that coincide after rounding are one), or ``[None]`` without a width axis (the run's
    ``training.width`` stays as the spec gives it)."""
    g = spec.grid
    if g.width is not None:
        ms = [int(round(v)) for v in _axis_values(g.width)]
    elif g.width_ratio is not None:
        ms = [max(1, round(r * d)) for r in _axis_values(g.width_ratio)]
    else:
        return [None]
    return list(dict.fromkeys(ms))


def linked_weight_decays(spec: SweepSpec, d: int, n: int) -> list[tuple[float, float]]:
    """``(lambda, power)`` of every linked family at (d, n): lambda = coef * of^power.

    ValueError naming ``link.weight_decay.power`` when a lambda is not a positive finite
    number (a large power overflows, a very negative one underflows to 0: a silent
    lambda = 0 would train a different, often non-unique, problem)."""
    assert spec.link is not None
    link = spec.link["weight_decay"]
    base = {"n": n, "d": d, "alpha": n / samples_per_unit(spec.model, d)}
    out = []
    for p in link.powers():
        try:
            lam = link.coef * float(base[link.of]) ** p
        except OverflowError:
            lam = math.inf
        if not (math.isfinite(lam) and lam >= sys.float_info.min):
            what = "overflows" if not math.isfinite(lam) or lam > 1 else "underflows to 0"
            raise ValueError(
                f"link.weight_decay.power {p:g}: lambda = {link.coef:g} * {link.of}^{p:g} "
                f"{what} at {link.of} = {base[link.of]:g}; choose a power that keeps lambda "
                "a positive finite number"
            )
        out.append((lam, p))
    return out


def expand(spec: SweepSpec) -> Iterator[RunConfig]:
    """Every run of the sweep, in a fixed order: d, n, width, weight decay, gamma, noise,
    seed (the width right after n: a sweep's runs of one shape, which batch together, stay
    next to each other). A width axis sets each run's ``training.width``."""
    g = spec.grid
    gammas = _axis_values(g.gamma) or [spec.teacher.gamma]
    noises = _axis_values(g.noise) or [spec.teacher.noise]
    linked = spec.link is not None and "weight_decay" in spec.link
    for d in _dimensions(g):
        trainings = [
            spec.training if m is None else spec.training.model_copy(update={"width": m})
            for m in widths(spec, d)
        ]
        for n in sample_sizes(spec, d):
            wds: list[tuple[float, float | None]]
            if linked:
                wds = list(linked_weight_decays(spec, d, n))
            else:
                wds = [(v, None) for v in _axis_values(g.weight_decay)]
            for training in trainings:
                for (wd, power), gamma, noise, seed in itertools.product(
                    wds, gammas, noises, g.seed
                ):
                    yield RunConfig(
                        model=spec.model,
                        d=d,
                        n=n,
                        weight_decay=wd,
                        seed=seed,
                        teacher=spec.teacher.model_copy(update={"gamma": gamma, "noise": noise}),
                        training=training,
                        measure=spec.measure,
                        link_power=power,
                    )


def spec_from_obj(obj: Any) -> SweepSpec:
    """Validate a parsed JSON/YAML object as a sweep spec (raises pydantic.ValidationError)."""
    return SweepSpec.model_validate(obj)
