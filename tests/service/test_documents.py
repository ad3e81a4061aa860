"""Reading a YAML document: a key given twice and a file that is not UTF-8 are refused with
where it happened; anchors, merge keys and JSON still read as PyYAML reads them."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.documents import parse_document, read_document
from service.errors import SpecError


def test_a_key_given_twice_is_refused_with_both_lines(tmp_path: Path) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text("model: diagonal\ngrid:\n  d: [10]\n  n: [20]\n  d: [20]\n")
    with pytest.raises(SpecError, match=r"found the key 'd' twice \(first at line 3\)") as info:
        read_document(path)
    assert "line 5" in str(info.value) and str(path) in str(info.value)


def test_a_json_key_given_twice_is_refused() -> None:
    with pytest.raises(SpecError, match="found the key 'model' twice"):
        parse_document('{"model": "diagonal", "model": "quadratic"}', "body.json")


def test_a_file_that_is_not_utf8_is_refused_with_the_byte(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("name: café\n".encode("latin-1"))
    with pytest.raises(SpecError, match=r"is not UTF-8 text \(byte 9: invalid continuation"):
        read_document(path)


def test_anchors_merge_keys_and_json_read_as_before(tmp_path: Path) -> None:
    text = "base: &b {d: [10], n: [20]}\ngrid:\n  <<: *b\n  n: [40]\nseeds: *b\n"
    assert parse_document(text, "x") == {
        "base": {"d": [10], "n": [20]},
        "grid": {"d": [10], "n": [40]},  # a merged key the mapping overrides is not a repeat
        "seeds": {"d": [10], "n": [20]},
    }
    assert parse_document('{"a": [1, 2], "b": {"c": null}}', "x") == {"a": [1, 2], "b": {"c": None}}


def test_invalid_yaml_names_the_file() -> None:
    with pytest.raises(SpecError, match="spec.yaml is not valid YAML"):
        parse_document("grid: [1, 2\n", "spec.yaml")
