"""What the leakage check found for one ancestor, in words and as the lineage records it.

Two directions (zoo/registry/leakage.py checks both):

- *held out*: images of the new **training** split that the ancestor held out as its test
  or validation split (its figures were measured on them, and the new weights train on
  them);
- *seen*: images of the new **test** or **validation** split that the ancestor trained on
  (the new weights start from weights that have seen them, so the new figures measured
  on them are optimistic).

The lineage's ``dataset.split.leakage`` holds one :meth:`Finding.to_dict` per ancestor;
records written before the second direction have no ``seen_in_training``, ``evaluated``
or ``seen_line`` and read as "not checked" (:func:`seen_note`). Docs: docs/finetune.md,
"Leakage across a lineage".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["HELD_OUT", "Finding", "leakage_text", "seen_fix", "seen_note"]

# the parts of an ancestor's split a child must not train on; and the parts of the
# child's split whose figures an ancestor's training flatters (same names, same order)
HELD_OUT = ("test", "validation")
_FIGURE = {"test": "test_accuracy", "validation": "val_accuracy"}
_FLAG = {"test": "--test-split 0", "validation": "--val-split 0"}


def _parts(parts: list[str]) -> str:
    return " and ".join(parts)


@dataclass(frozen=True)
class Finding:
    """What one ancestor's split says about the new run's split."""

    ancestor: str  # models:/NAME/N
    checked_with: str  # "split.json", "recomputed" or "unknown"
    in_training: Mapping[str, int] | None = None  # part -> its images in the training split
    held: Mapping[str, int] | None = None  # part -> images the ancestor held out there
    seen: Mapping[str, int] | None = None  # part of the new split -> ancestor-trained images
    evaluated: Mapping[str, int] | None = None  # part of the new split -> its images
    trained: int = 0  # images the ancestor trained on
    reason: str = ""  # unknown: why
    examples: tuple[str, ...] = ()  # a few of the files, relative to the data's folder
    seen_examples: tuple[str, ...] = ()  # a few of the seen files
    fix: str = ""  # how to train without the held-out images
    seen_fix: str = ""  # how to measure without the seen images

    @property
    def leaked(self) -> int:
        """New training images the ancestor held out."""
        return sum((self.in_training or {}).values())

    @property
    def seen_count(self) -> int:
        """New validation and test images the ancestor trained on."""
        return sum((self.seen or {}).values())

    @property
    def result(self) -> str:
        if self.in_training is None:
            return "unknown"
        return "leak" if self.leaked or self.seen_count else "clean"

    def _how(self) -> str:
        return "its split.json" if self.checked_with == "split.json" else "its recomputed split"

    def _none_seen(self) -> str:
        """The clean clause of the other direction ("" when the new run evaluates on no
        images, or some were seen: the seen line says so)."""
        evaluated = [p for p in reversed(HELD_OUT) if (self.evaluated or {}).get(p)]
        if self.seen_count or not evaluated:
            return ""
        return (
            f", and none of the {self.trained} images it trained on are in this "
            f"{' or '.join(evaluated)} split"
        )

    def summary(self) -> str:
        """What was found about the training split, without the fix."""
        if self.in_training is None:
            return f"leakage unknown: {self.ancestor} {self.reason}"
        held = self.held or {}
        how = self._how()
        if not self.leaked:
            if not sum(held.values()):
                return (
                    f"leakage check: {self.ancestor} held out no images ({how}){self._none_seen()}"
                )
            counts = ", ".join(f"{part} {held.get(part, 0)}" for part in HELD_OUT)
            return (
                f"leakage check: none of the {sum(held.values())} images {self.ancestor} held "
                f"out ({counts}; {how}) are in this training split{self._none_seen()}"
            )
        parts = ", ".join(f"{n} in its {part} split" for part, n in self.in_training.items() if n)
        return (
            f"leakage: {self.leaked} training image(s) were held out by {self.ancestor} "
            f"({parts}, per {how}; e.g. {', '.join(self.examples)})"
        )

    def line(self) -> str:
        """The line zoo prints about the training split (a leak: with the fix)."""
        if not self.leaked:
            return self.summary()
        return f"{self.summary()}: add --strict to refuse, or {self.fix}"

    def seen_parts(self) -> list[str]:
        """The parts of the new split that hold images the ancestor trained on."""
        return [part for part in HELD_OUT if (self.seen or {}).get(part)]

    def seen_summary(self) -> str:
        """What was found about the validation and test splits ("" when clean)."""
        parts = self.seen_parts()
        if not parts:
            return ""
        seen, evaluated = self.seen or {}, self.evaluated or {}
        figures = (
            f"the {_parts(parts)} accuracy of this version {'are' if len(parts) > 1 else 'is'}"
        )
        counts = _parts(
            [f"{seen[part]} of its {evaluated.get(part, 0)} {part} images" for part in parts]
        )
        return (
            f"leakage: {figures} optimistic: {counts} were seen in training by "
            f"{self.ancestor} (per {self._how()}; e.g. {', '.join(self.seen_examples)})"
        )

    def seen_line(self) -> str:
        """The line zoo prints about the validation and test splits ("" when clean)."""
        if not self.seen_count:
            return ""
        return f"{self.seen_summary()}: add --strict to refuse, or {self.seen_fix}"

    def lines(self) -> list[tuple[bool, str]]:
        """Every line zoo prints for this ancestor, each with whether it is a warning."""
        said = [(bool(self.leaked), self.line())]
        if self.seen_count:
            said.append((True, self.seen_line()))
        return said

    def refusals(self) -> list[tuple[str, str]]:
        """What ``--strict`` refuses, each as (what was found and refused, the fix)."""
        out = []
        if self.leaked:
            out.append((f"{self.summary()}: --strict refuses to train on them", self.fix))
        if self.seen_count:
            refused = f"{self.seen_summary()}: --strict refuses to evaluate on them"
            out.append((refused, self.seen_fix))
        return out

    def to_dict(self) -> dict[str, Any]:
        def counts(value: Mapping[str, int] | None) -> dict[str, int] | None:
            return dict(value) if value is not None else None

        return {
            "ancestor": self.ancestor,
            "checked_with": self.checked_with,
            "result": self.result,
            "in_training": counts(self.in_training),
            "held_out": counts(self.held),
            "seen_in_training": counts(self.seen),
            "evaluated": counts(self.evaluated),
            "line": self.line(),
            "seen_line": self.seen_line() or None,
        }


def seen_fix(parts: list[str], same_split: str) -> str:
    """How to measure a version on images no ancestor trained on. ``same_split``: the
    options that give the ancestor's split again on the same data ("" when unknown)."""
    fix = "fine-tune on a folder of images no ancestor trained on"
    if same_split:
        fix += f", or on the same data with its split ({same_split})"
    flags = " ".join(_FLAG[part] for part in parts)
    return f"{fix}, or {flags} and an external check on such images"


def _entries(lineage: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    split = (lineage.get("dataset") or {}).get("split") or {}
    found = split.get("leakage") or []
    return [f for f in found if isinstance(f, Mapping)]


def leakage_text(lineage: Mapping[str, Any]) -> str:
    """The leakage check a version's lineage records, one line per line zoo printed ("" when
    it had no registered ancestor or predates the check)."""
    lines = []
    for f in _entries(lineage):
        lines.append(str(f.get("line")))
        if f.get("seen_line"):
            lines.append(str(f["seen_line"]))
    return "\n".join(lines)


def seen_note(lineage: Mapping[str, Any]) -> str:
    """One line for ``zoo registry show``, beside the metrics, when the lineage records that
    an ancestor trained on images of this version's test (or validation) split: which
    figure is optimistic and why. "" otherwise, and for records that predate the check."""
    notes = []
    for part in HELD_OUT:
        by = []
        for f in _entries(lineage):
            seen = f.get("seen_in_training") or {}
            evaluated = f.get("evaluated") or {}
            if isinstance(seen, Mapping) and seen.get(part):
                total = evaluated.get(part) if isinstance(evaluated, Mapping) else None
                of = f" of its {total}" if total else ""
                by.append(
                    f"{seen[part]}{of} {part} images were seen in training by {f.get('ancestor')}"
                )
        if by:
            notes.append(f"{_FIGURE[part]} is optimistic: {'; '.join(by)}")
    return "; ".join(notes)
