"""Reading a YAML (or JSON) document from a file: a sweep spec for ``scalesweep submit``, an
example under ``examples/``.

Stricter than ``yaml.safe_load`` in the two ways that silently change what a researcher
meant: a key given twice in one mapping is refused (PyYAML keeps the last one without a
word), and a file that is not UTF-8 is refused with the byte where it stops being text
(instead of a traceback). Everything else is PyYAML's safe loader (a JSON file is YAML).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import yaml
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode

from service.errors import SpecError


class _StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a key that a mapping already has."""

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, Any] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *anchor` merges keys that the mapping's own keys may override
            key = self.construct_object(key_node, deep=deep)  # type: ignore[no-untyped-call]
            try:
                first = seen.setdefault(key, key_node.start_mark)
            except TypeError:
                continue  # an unhashable key: the base constructor says what is wrong
            if first is not key_node.start_mark:
                raise ConstructorError(
                    "while reading a mapping",
                    node.start_mark,
                    f"found the key {key!r} twice (first at line {first.line + 1})",
                    key_node.start_mark,
                )
        return super().construct_mapping(node, deep=deep)


def parse_document(text: str, source: str) -> Any:
    """The document in ``text`` (``source`` names it in errors); SpecError when it is not
    valid YAML or repeats a key."""
    stream = io.StringIO(text)
    stream.name = source  # type: ignore[misc]  # PyYAML's marks name the stream
    try:
        return yaml.load(stream, Loader=_StrictLoader)  # noqa: S506 - a safe loader
    except yaml.YAMLError as exc:
        raise SpecError(f"{source} is not valid YAML: {exc}", field="file") from None


def read_document(path: Path) -> Any:
    """The YAML document of the file at ``path``; SpecError when it is not UTF-8 text, not
    valid YAML or repeats a key (OSError when it cannot be read)."""
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError(
            f"{path} is not UTF-8 text (byte {exc.start}: {exc.reason}); save it as UTF-8",
            field="file",
        ) from None
    return parse_document(text, str(path))
