"""The CLI's `--json` outputs are what they were when issue 23's re-layout started.

tests/golden/outputs.json was recorded on commit b70b89d (before any file moved) by
`python tests/golden/record.py --write`; this test runs the same commands and compares.
A deliberate change of an output re-records the file in the same commit, saying why.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent / "golden"))
import record

pytestmark = pytest.mark.slow


def differences(want: Any, got: Any, where: str = "") -> list[str]:
    """Where two normalised outputs differ; floats agree to 4 significant digits."""
    if isinstance(want, dict) and isinstance(got, dict):
        out = [f"{where}.{k}: missing" for k in want if k not in got]
        out += [f"{where}.{k}: not recorded" for k in got if k not in want]
        for k in sorted(want.keys() & got.keys()):
            out += differences(want[k], got[k], f"{where}.{k}")
        return out
    if isinstance(want, list) and isinstance(got, list):
        if len(want) != len(got):
            return [f"{where}: {len(want)} items recorded, {len(got)} now"]
        pairs = enumerate(zip(want, got, strict=True))
        return [d for i, (w, g) in pairs for d in differences(w, g, f"{where}[{i}]")]
    if isinstance(want, float) and isinstance(got, float):
        close = math.isclose(want, got, rel_tol=1e-4, abs_tol=1e-7)
        return [] if close else [f"{where}: {want} -> {got}"]
    return [] if want == got and type(want) is type(got) else [f"{where}: {want!r} -> {got!r}"]


def test_differences_sees_a_changed_value_and_a_changed_float() -> None:
    want = {"a": [1, {"b": 0.5}], "c": "x"}
    assert differences(want, {"a": [1, {"b": 0.50001}], "c": "x"}) == []
    assert differences(want, {"a": [1, {"b": 0.51}], "c": "x"}) == [".a[1].b: 0.5 -> 0.51"]
    assert differences(want, {"a": [1, {"b": 0.5}], "c": "y", "d": 1}) == [
        ".d: not recorded",
        ".c: 'x' -> 'y'",
    ]


def test_cli_json_outputs_are_what_they_were_before_the_relayout() -> None:
    recorded = json.loads(record.RECORDED.read_text(encoding="utf-8"))
    now = record.record()
    found = differences(recorded, now)
    assert not found, "\n".join(found[:40])
