"""What `zoo home prune` removes, skips and keeps: the plan both the dry run and the
removal print (zoo.upkeep.prune makes it; zoo.upkeep.prune_weights adds pulled weights)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Item", "Plan", "Skip"]


@dataclass
class Item:
    """One thing prune removes, whole: a run's checkpoints, a cache file, one size of
    decoded images, a data folder's verdict store, a pulled model."""

    # checkpoints | features | stage-features | prefix | decoded | verdicts | weights | leftover
    kind: str
    what: str
    paths: list[str]  # absolute
    bytes: int
    reference: str | None = None  # weights: the pulled reference `zoo cache rm` takes

    def to_dict(self) -> dict[str, Any]:
        out = {"kind": self.kind, "what": self.what, "bytes": self.bytes, "paths": self.paths}
        return out | ({"reference": self.reference} if self.reference else {})


@dataclass
class Skip:
    what: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"what": self.what, "reason": self.reason}


@dataclass
class Plan:
    root: Path
    older_than: float
    items: list[Item] = field(default_factory=list)
    skipped: list[Skip] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)

    @property
    def bytes(self) -> int:
        return sum(i.bytes for i in self.items)

    def to_dict(self) -> dict[str, Any]:
        return {
            "home": str(self.root),
            "older_than_seconds": self.older_than,
            "bytes": self.bytes,
            "items": [i.to_dict() for i in self.items],
            "skipped": [s.to_dict() for s in self.skipped],
            "kept": self.kept,
        }
