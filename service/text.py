"""User-given text (sweep names, token names, teams): what is accepted, and how any text is
shown safely.

A name is stored once and then printed by the CLI, rendered by the dashboard, written into
exports and logs. Characters that act instead of being shown are refused at the door
(:func:`check_text`): C0 and C1 control characters (NUL, BEL, ESC, CR, LF, TAB, DEL, ...),
lone surrogates (not text: they cannot even be encoded as UTF-8, and PostgreSQL refuses
NUL), and the invisible bidirectional controls that reorder what a terminal or a page shows
(U+202A-U+202E, U+2066-U+2069, U+200E, U+200F, U+061C). Letters of right-to-left scripts are
text and are kept. :func:`escape_controls` is the other side: any string (including ones stored
before these rules, errors and tracebacks) with those characters written as visible escapes.
"""

from __future__ import annotations

import unicodedata

BIDI_CONTROLS = frozenset(
    "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)
"""Invisible characters that change the display order of the text around them."""


def bad_character(value: str) -> str | None:
    """The first character of ``value`` that :func:`check_text` refuses, described (e.g.
    ``"U+001B (a control character)"``); None when every character is text."""
    for ch in value:
        category = unicodedata.category(ch)
        if category == "Cc":
            kind = "a control character"
        elif category == "Cs":
            kind = "a lone surrogate, not a character"
        elif ch in BIDI_CONTROLS:
            kind = "an invisible bidirectional control"
        else:
            continue
        return f"U+{ord(ch):04X} ({kind})"
    return None


def check_text(value: str, field: str) -> str:
    """``value`` when every character is text, else ValueError naming ``field`` and the
    first character refused (pydantic turns it into a 422 naming the field)."""
    bad = bad_character(value)
    if bad is not None:
        raise ValueError(
            f"{field} must be printable text; it contains {bad}: control characters, "
            "surrogates and bidirectional controls are refused"
        )
    return value


def escape_controls(value: str) -> str:
    """``value`` with every character :func:`check_text` refuses written as a visible escape
    (``\\x1b``, ``\\n``, ``\\u202e``, ``\\ud800``): safe to print on a terminal."""
    if bad_character(value) is None:
        return value
    out = []
    for ch in value:
        if unicodedata.category(ch) in ("Cc", "Cs") or ch in BIDI_CONTROLS:
            out.append(ch.encode("unicode_escape", "backslashreplace").decode("ascii"))
        else:
            out.append(ch)
    return "".join(out)
