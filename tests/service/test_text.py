"""User-given text: control characters, surrogates and bidirectional controls are refused
by name; any text can be shown with them escaped; other scripts are text."""

from __future__ import annotations

import re

import pytest

from service.text import bad_character, check_text, escape_controls


@pytest.mark.parametrize(
    ("text", "code"),
    [("a\x00b", "U+0000"), ("\x1b[31m", "U+001B"), ("bell\x07", "U+0007"), ("a\r\nb", "U+000D"),
     ("tab\t", "U+0009"), ("del\x7f", "U+007F"), ("c1\x9b", "U+009B"), ("x\u202ey", "U+202E"),
     ("\u2066iso", "U+2066"), ("lone\ud800", "U+D800")],
)  # fmt: skip
def test_refused_characters_are_named(text: str, code: str) -> None:
    bad = bad_character(text)
    assert bad is not None and bad.startswith(code)
    with pytest.raises(
        ValueError, match=re.escape(f"name must be printable text; it contains {code}")
    ):
        check_text(text, "name")


@pytest.mark.parametrize(
    "text", ["quadratic d=400", "λ ~ n^-1/2", "שלום עולם", "مرحبا", "日本語", ""]
)
def test_text_of_any_script_is_kept(text: str) -> None:
    assert bad_character(text) is None
    assert check_text(text, "name") == text
    assert escape_controls(text) == text


def test_escaping_makes_every_refused_character_visible() -> None:
    shown = escape_controls("a\x1b[31mred\x07\r\n\u202eevil\ud800 שלום")
    assert shown == "a\\x1b[31mred\\x07\\r\\n\\u202eevil\\ud800 שלום"
    assert bad_character(shown) is None
    shown.encode("utf-8")  # printable anywhere: no surrogate is left
