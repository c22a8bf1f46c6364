"""What a query of versions asks for, one page of its answer, and the page token that
resumes it: shared by the direct SQLite reader (:mod:`zoo.registry.sqlite_read`) and
MLflow's search (:mod:`zoo.registry.search`). No I/O here.

A :class:`VersionFilter` is a conjunction of conditions on a version's name and tags.
The SQLite reader turns it into exact SQL; MLflow's filter language has no OR and its
``LIKE`` is a superset of "contains" (``_`` and ``%`` are wildcards, SQLite's ``LIKE``
ignores case), so what MLflow returns is checked again with :meth:`VersionFilter.matches`.
Listings are in (name, version) order on both paths.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from zoo.contract.errors import UsageError
from zoo.registry.records import TAG, RegisteredVersion

__all__ = [
    "ORDER_BY",
    "Page",
    "Position",
    "VersionFilter",
    "base_stem",
    "decode_token",
    "encode_token",
    "quoted",
]

# MLflow's order for listings: the one the SQLite reader uses too
ORDER_BY = ["name ASC", "version_number ASC"]


def quoted(text: str) -> str:
    """A string literal of MLflow's filter language."""
    return "'" + text.replace("'", "\\'") + "'"


def base_stem(reference: str) -> str:
    """A reference without its pinned revision (``timm:resnet50.a1_in1k@REV`` -> before @)."""
    return reference.split("@", 1)[0]


@dataclass(frozen=True)
class VersionFilter:
    """Versions whose name is ``name`` (when given), whose tag ``key`` equals ``value`` for
    each of ``tags``, whose tag ``key`` contains ``text`` for each of ``contains``, and
    whose ``zoo.base`` is ``base`` at any revision (``base``: a reference's stem)."""

    name: str | None = None
    tags: tuple[tuple[str, str], ...] = ()
    contains: tuple[tuple[str, str], ...] = ()
    base: str | None = None

    def matches(self, v: RegisteredVersion) -> bool:
        if self.name is not None and v.name != self.name:
            return False
        if any(v.tags.get(k) != want for k, want in self.tags):
            return False
        if any(text not in (v.tags.get(k) or "") for k, text in self.contains):
            return False
        return self.base is None or (bool(v.base) and base_stem(v.base or "") == self.base)

    def mlflow_filter(self) -> str | None:
        """The filter string for ``search_model_versions`` (a superset: see the module)."""
        clauses = []
        if self.name is not None:
            clauses.append(f"name = {quoted(self.name)}")
        clauses += [f"tags.`{k}` = {quoted(v)}" for k, v in self.tags]
        clauses += [f"tags.`{k}` LIKE {quoted('%' + t + '%')}" for k, t in self.contains]
        if self.base is not None:
            clauses.append(f"tags.`{TAG.BASE}` LIKE {quoted(self.base + '%')}")
        return " AND ".join(clauses) or None

    def key(self) -> str:
        """What a page token is bound to: a token of another listing is refused."""
        text = json.dumps([self.name, sorted(self.tags), sorted(self.contains), self.base])
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


@dataclass(frozen=True)
class Position:
    """Where a listing resumes: ``cursor`` (the SQLite reader's offset, an int, or
    MLflow's own page token, a str; None: the start) with the first ``skip`` versions of
    the store's page of ``size`` already shown, and ``shown`` versions before it."""

    cursor: int | str | None = None
    skip: int = 0
    size: int = 0
    shown: int = 0


@dataclass(frozen=True)
class Page:
    """One page of a listing: its versions, the token of the next page (None: the last
    page), how many versions came before it, and how many the whole listing holds
    (None where the store cannot say without reading them all: MLflow's search counts
    nothing)."""

    versions: list[RegisteredVersion] = field(default_factory=list)
    next_page_token: str | None = None
    start: int = 0
    total: int | None = None


def encode_token(position: Position, query: VersionFilter) -> str:
    doc: dict[str, Any] = {
        "q": query.key(),
        "c": position.cursor,
        "k": position.skip,
        "r": position.size,
        "n": position.shown,
    }
    raw = json.dumps(doc, separators=(",", ":")).encode("utf-8")
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def decode_token(token: str | None, query: VersionFilter) -> Position:
    """The position a ``--page-token`` names; one line when it is not one of this
    listing's (another listing's filters, a damaged token)."""
    if not token:
        return Position()
    again = "start again without --page-token"
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        doc = json.loads(raw)
        cursor, skip, size, shown = doc["c"], int(doc["k"]), int(doc["r"]), int(doc["n"])
        if not isinstance(cursor, (int, str)) or min(skip, size, shown) < 0:
            raise ValueError(cursor)
    except (ValueError, KeyError, TypeError) as exc:
        raise UsageError(
            f"--page-token '{token}' is not a page token zoo printed: {again}"
        ) from exc
    if doc.get("q") != query.key():
        raise UsageError(
            f"--page-token '{token}' belongs to a listing with other filters (--license, "
            f"--base, --dataset): give the same filters as the page that printed it, or {again}"
        )
    return Position(cursor, skip, size, shown)
