"""Display names: how fields, fitted forms and spectra are written for people.

One table, read by the dashboard (served to the browser as JSON by ``api.dashboard``) and by
the paper figures (``cli.figures``): legends, axis labels and table headers say ``λ = 0.01``,
``l = 0.5``, ``|θ|`` and "power law", never ``weight_decay=0.01``, ``link_power=-0.5``,
``abs_theta`` or ``power_law``.

Each :class:`Name` has a plain-text symbol (Unicode, for HTML and text), the same symbol in
matplotlib's mathtext (``tex``, for figures), the words that say what it is, and a sign:
the spec's ``link_power`` p of ``λ = λ0 x^p`` is shown as ``l = -p`` (λ ∝ x^-l, THEORY.md 7),
the l of the phase diagram. Plain standard library, no heavy import: the dashboard's router
and the CLI load it cheaply.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Name:
    """How one field (or spectrum) is shown."""

    symbol: str
    """Plain text (Unicode): ``λ``."""
    tex: str
    """The same in matplotlib mathtext, without dollars: ``\\lambda``."""
    meaning: str
    """What it is, in words: ``weight decay``."""
    sign: int = 1
    """Shown values are the stored ones times this (``link_power``: l = -power)."""


FIELDS: dict[str, Name] = {
    "n": Name("n", "n", "samples"),
    "d": Name("d", "d", "dimension"),
    "alpha": Name("α", r"\alpha", "n/d² quadratic, n/d diagonal"),
    "weight_decay": Name("λ", r"\lambda", "weight decay"),
    "lambda": Name("λ", r"\lambda", "weight decay"),
    "link_power": Name("l", "l", "λ ∝ x⁻ˡ", sign=-1),
    "decay": Name("l", "l", "λ ∝ x⁻ˡ"),
    "gamma": Name("γ", r"\gamma", "teacher's spectral decay"),
    "noise": Name("Δ", r"\Delta", "label noise"),
    "rank": Name("r", "r", "teacher's rank"),
    "seed": Name("seed", r"\mathrm{seed}", "random seed"),
    "width": Name("m", "m", "width"),
    "width_ratio": Name("m/d", "m/d", "width ratio"),
    "excess_risk": Name("R", "R", "excess risk"),
    "exponent": Name("β", r"\beta", "exponent of R ∝ x⁻ᵝ"),
}
"""Grid axes, configuration fields and measured quantities."""

SPECTRA: dict[str, Name] = {
    "abs_theta": Name("|θ|", r"|\theta|", "effective coefficients |a w|"),
    "eig_S": Name("eig(S)", r"\mathrm{eig}(S)", "eigenvalues of S"),
    "sv_W": Name("sv(W)", r"\mathrm{sv}(W)", "singular values of W"),
    "abs_theta_raw": Name("|θ| raw", r"|\theta|\ \mathrm{raw}", "as trained, uncertified"),
    "eig_S_raw": Name("eig(S) raw", r"\mathrm{eig}(S)\ \mathrm{raw}", "as trained, uncertified"),
    "sv_W_raw": Name("sv(W) raw", r"\mathrm{sv}(W)\ \mathrm{raw}", "as trained, uncertified"),
}
"""The spectra of the trained weights (``Spectrum.kind``)."""

FORMS: dict[str, str] = {
    "power_law": "power law",
    "broken_power_law": "broken power law",
    "plateau": "plateau",
}
"""The fitted forms of R against x (``GroupFit.form``)."""


def _name(key: str) -> Name | None:
    return FIELDS.get(key) or SPECTRA.get(key)


def symbol(key: str, *, math: bool = False) -> str:
    """``λ`` (``$\\lambda$`` with ``math``); an unknown key is shown as it is."""
    name = _name(key)
    if name is None:
        return key
    return f"${name.tex}$" if math else name.symbol


def axis_label(key: str, *, math: bool = False) -> str:
    """``λ (weight decay)``: the symbol and its words."""
    name = _name(key)
    if name is None:
        return key.replace("_", " ")
    return f"{symbol(key, math=math)} ({name.meaning})"


def form(name: str | None) -> str:
    """``power law`` for ``power_law``, ``broken power law (2 breaks)`` for the candidate
    ``broken_power_law_2`` (another name with spaces for underscores, None as "")."""
    if name is None:
        return ""
    if name in FORMS:
        return FORMS[name]
    base, _, k = name.rpartition("_")
    if base == "broken_power_law" and k.isdigit():
        return f"{FORMS[base]} ({k} {'break' if k == '1' else 'breaks'})"
    return name.replace("_", " ")


def number(value: float | None, digits: int = 4) -> str:
    """``%g`` with ``digits`` significant digits and a short exponent: 0.01, 1600, 1e-5."""
    if value is None:
        return "–"
    if value == 0:
        return "0"  # and never "-0"
    text = f"{value:.{digits}g}"
    if "e" in text:
        mantissa, exp = text.split("e")
        text = f"{mantissa}e{int(exp)}"
    return text


def shown(key: str, value: float | None) -> float | None:
    """The value as displayed (``link_power`` -0.5 is l = 0.5)."""
    name = FIELDS.get(key)
    if value is None or name is None or name.sign == 1:
        return value
    return name.sign * value


def group_label(group: Mapping[str, float | None], *, math: bool = False) -> str:
    """``λ = 0.01, l = 0.5`` for ``{"weight_decay": 0.01, "link_power": -0.5}``; "all runs"
    for the empty group."""
    if not group:
        return "all runs"
    return ", ".join(f"{symbol(k, math=math)} = {number(shown(k, v))}" for k, v in group.items())


def table() -> dict[str, Any]:
    """The whole table as JSON-ready data (what the dashboard loads)."""
    return {
        "fields": {k: asdict(v) for k, v in FIELDS.items()},
        "spectra": {k: asdict(v) for k, v in SPECTRA.items()},
        "forms": dict(FORMS),
    }
