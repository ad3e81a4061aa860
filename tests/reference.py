"""THEORY-reference-values.json (THEORY.md section 9), from ``../shared`` beside the repository.

A missing file skips the tests that need it, unless SCALESWEEP_REQUIRE_REFERENCE=1 (CI),
where it fails them: the reference values must be found, not skipped.
"""

from __future__ import annotations

import json
import os
from functools import cache
from pathlib import Path
from typing import Any

import pytest

PATH = Path(__file__).resolve().parents[2] / "shared" / "THEORY-reference-values.json"


@cache
def _load() -> list[dict[str, Any]]:
    cases: list[dict[str, Any]] = json.loads(PATH.read_text())
    return cases


def reference_cases(model: str | None = None) -> list[dict[str, Any]]:
    """Every verification case (of one ``model``), or skip / fail when the file is missing."""
    if not PATH.is_file():
        missing = f"THEORY reference values not found at {PATH} (../shared beside the repo)"
        if os.environ.get("SCALESWEEP_REQUIRE_REFERENCE") == "1":  # CI: must run, not skip
            pytest.fail(missing)
        pytest.skip(missing)
    return [c for c in _load() if model is None or c["model"] == model]
