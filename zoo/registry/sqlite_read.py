"""Reading an SQLite store's registry with Python's own sqlite3, read-only, without MLflow.

Importing MLflow costs 2-4 s, far more than answering a listing, so zoo reads the
registry of an SQLite store (the embedded one included) from MLflow's tables directly:
``model_versions``, ``model_version_tags``, ``registered_model_aliases`` and, for a
run's data sets, ``inputs``, ``datasets`` and ``input_tags``, as MLflow's SQL store keeps
them (deleted versions are marked ``Deleted_Internal``; with MLflow's workspaces, the
``default`` one). Every answer is a fixed handful of statements whatever the store's
size: the filters, the (name, version) order, the page and the count are SQL, and the
tags and aliases are read for the versions answered only.

Each function answers None when it cannot read the store this way (no store yet,
another workspace, a schema this code does not know): the caller asks MLflow instead.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any, TypeVar

from zoo.registry.paging import VersionFilter
from zoo.registry.records import TAG, RegisteredVersion, from_model_version

__all__ = ["one", "page", "run_datasets", "tag_values", "versions"]

T = TypeVar("T")
_LIVE = "(mv.current_stage IS NULL OR mv.current_stage != 'Deleted_Internal')"


def _open(db: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True, timeout=30)


def _with_store(read: Callable[[sqlite3.Connection, bool], T]) -> T | None:
    """``read(connection, has_workspaces)`` on zoo's store, or None (ask MLflow)."""
    from zoo.registry import store

    uri = store.tracking_uri()
    db = store.sqlite_path(uri)
    if db is None or not db.is_file():
        return None
    if store.is_embedded(uri) and not store.embedded_exists():
        return None
    # As configure() would: a moved home, a damaged or emptied database are refused
    # here too, so this reader and MLflow's agree (never "0 versions" over lost ones).
    store.check_health(uri)
    if os.environ.get("MLFLOW_WORKSPACE", "default") not in ("", "default"):
        return None
    try:
        conn = _open(db)
    except sqlite3.Error:
        return None
    try:
        columns = {r[1] for r in conn.execute("PRAGMA table_info(model_versions)")}
        return read(conn, "workspace" in columns)
    except sqlite3.Error:
        return None
    finally:
        conn.close()


def _in(table: str, ws: bool) -> str:
    """``table.workspace = 'default' AND `` where the schema has workspaces."""
    return f"{table}.workspace = 'default' AND " if ws else ""


def _tag(key: str, test: str, ws: bool) -> str:
    """Versions whose tag ``key`` passes ``test`` (on ``t.value``): driven from the tags'
    primary key (workspace, key, ...), so only that key's rows are read."""
    return (
        "(mv.name, mv.version) IN (SELECT t.name, t.version FROM model_version_tags t "
        f"WHERE {_in('t', ws)}t.key = ? AND {test})"
    )


def _conditions(f: VersionFilter, ws: bool) -> tuple[list[str], list[Any]]:
    sql: list[str] = []
    params: list[Any] = []
    if f.name is not None:
        sql.append("mv.name = ?")
        params.append(f.name)
    for key, value in f.tags:
        sql.append(_tag(key, "t.value = ?", ws))
        params += [key, value]
    for key, text in f.contains:
        sql.append(_tag(key, "instr(t.value, ?) > 0", ws))
        params += [key, text]
    if f.base is not None:  # the stem itself, or the stem pinned to any revision
        sql.append(_tag(TAG.BASE, "(t.value = ? OR substr(t.value, 1, ?) = ?)", ws))
        params += [TAG.BASE, f.base, len(f.base) + 1, f.base + "@"]
    return sql, params


def _where(
    filters: Sequence[VersionFilter], ws: bool, version: int | None = None
) -> tuple[str, list[Any]]:
    """Live versions (of the default workspace) matching any of ``filters``."""
    clauses, params = [f"{_in('mv', ws)}{_LIVE}"], []
    if version is not None:
        clauses.append("mv.version = ?")
        params.append(version)
    alternatives = []
    for f in filters:
        sql, more = _conditions(f, ws)
        alternatives.append("(" + (" AND ".join(sql) or "1") + ")")
        params += more
    if alternatives:
        clauses.append("(" + " OR ".join(alternatives) + ")")
    return " WHERE " + " AND ".join(clauses), params


def _select(
    conn: sqlite3.Connection,
    ws: bool,
    where: tuple[str, list[Any]],
    limit: int | None,
    offset: int,
) -> list[RegisteredVersion]:
    """The versions ``where`` selects, by name and number, with their tags and aliases:
    three statements, each reading the selected versions' rows only."""
    clause, params = where
    params = [*params, -1 if limit is None else limit, offset]  # LIMIT -1: no limit
    chosen = (
        "SELECT mv.name, mv.version, mv.creation_time, mv.description, mv.run_id, mv.source "
        f"FROM model_versions mv{clause} ORDER BY mv.name, mv.version LIMIT ? OFFSET ?"
    )
    rows = conn.execute(chosen, params).fetchall()
    if not rows:
        return []
    tags: dict[tuple[str, int], dict[str, str]] = {}
    # CROSS JOIN: the selected versions drive, each reading its own tags by index
    tag_sql = (
        f"WITH sel AS ({chosen}) SELECT t.name, t.version, t.key, t.value FROM sel CROSS "
        f"JOIN model_version_tags t ON {_in('t', ws)}t.name = sel.name AND t.version = sel.version"
    )
    for name, version, key, value in conn.execute(tag_sql, params):
        tags.setdefault((name, int(version)), {})[key] = value
    aliases: dict[tuple[str, int], list[str]] = {}
    alias_sql = (
        f"WITH sel AS ({chosen}) SELECT a.name, a.alias, a.version FROM "
        f"registered_model_aliases a WHERE {_in('a', ws)}a.name IN (SELECT name FROM sel)"
    )
    for name, alias, version in conn.execute(alias_sql, params):
        aliases.setdefault((name, int(version)), []).append(alias)
    out = []
    for name, version, created, description, run_id, source in rows:
        key = (name, int(version))
        mv = SimpleNamespace(
            name=name,
            version=int(version),
            run_id=run_id,
            tags=tags.get(key, {}),
            source=source,
            description=description,
            aliases=sorted(aliases.get(key, ())),
            creation_timestamp=created,
        )
        out.append(from_model_version(mv))
    return out


def versions(
    filters: Sequence[VersionFilter] = (), *, limit: int | None = None, offset: int = 0
) -> list[RegisteredVersion] | None:
    """Versions matching any of ``filters`` (every version: none), by name and number,
    ``limit`` of them (None: all) from ``offset``."""
    return _with_store(lambda conn, ws: _select(conn, ws, _where(filters, ws), limit, offset))


def page(
    f: VersionFilter, *, limit: int | None, offset: int
) -> tuple[list[RegisteredVersion], int] | None:
    """:func:`versions` of one filter, and how many versions match it in all."""

    def read(conn: sqlite3.Connection, ws: bool) -> tuple[list[RegisteredVersion], int]:
        where = _where([f], ws)
        found = _select(conn, ws, where, limit, offset)
        count = conn.execute(f"SELECT COUNT(*) FROM model_versions mv{where[0]}", where[1])
        return found, int(count.fetchone()[0])

    return _with_store(read)


def one(
    name: str, version: int | None = None, alias: str | None = None
) -> list[RegisteredVersion] | None:
    """Version ``version`` of ``name``, the one ``alias`` points at, or (neither) its
    latest: ``[version]``, or ``[]`` when there is no such version."""

    def read(conn: sqlite3.Connection, ws: bool) -> list[RegisteredVersion]:
        number = version
        if alias is not None:
            sql = (
                "SELECT a.version FROM registered_model_aliases a "
                f"WHERE {_in('a', ws)}a.name = ? AND a.alias = ?"
            )
            row = conn.execute(sql, [name, alias]).fetchone()
            if row is None:
                return []
            number = int(row[0])
        elif number is None:
            clause, params = _where([VersionFilter(name=name)], ws)
            sql = f"SELECT MAX(mv.version) FROM model_versions mv{clause}"
            row = conn.execute(sql, params).fetchone()
            if row is None or row[0] is None:
                return []
            number = int(row[0])
        return _select(conn, ws, _where([VersionFilter(name=name)], ws, number), None, 0)

    return _with_store(read)


def tag_values(key: str, text: str) -> list[str] | None:
    """The distinct values of tag ``key`` that contain ``text``, on live versions."""

    def read(conn: sqlite3.Connection, ws: bool) -> list[str]:
        clause, params = _where([VersionFilter(contains=((key, text),))], ws)
        sql = (
            "SELECT DISTINCT t.value FROM model_version_tags t JOIN model_versions mv ON "
            f"{_in('t', ws)}t.name = mv.name AND t.version = mv.version{clause} AND t.key = ?"
        )
        return sorted(r[0] for r in conn.execute(sql, [*params, key]))

    return _with_store(read)


def run_datasets(run_id: str | None) -> list[dict[str, Any]] | None:
    """:func:`zoo.registry.datasets.run_datasets` from the tables: the datasets the run
    logged, in the order it logged them, each with its input's tags."""
    if not run_id:
        return []

    def read(conn: sqlite3.Connection, _ws: bool) -> list[dict[str, Any]]:
        where = "i.destination_type = 'RUN' AND i.destination_id = ?"
        rows = conn.execute(
            "SELECT i.input_uuid, d.name, d.digest, d.dataset_source_type, d.dataset_source, "
            "d.dataset_profile FROM inputs i JOIN datasets d ON d.dataset_uuid = i.source_id "
            f"WHERE {where} ORDER BY i.rowid",
            [run_id],
        ).fetchall()
        tags: dict[str, dict[str, str]] = {}
        for input_uuid, key, value in conn.execute(
            "SELECT t.input_uuid, t.name, t.value FROM input_tags t WHERE t.input_uuid IN "
            f"(SELECT i.input_uuid FROM inputs i WHERE {where}) ORDER BY t.rowid",
            [run_id],
        ):
            tags.setdefault(input_uuid, {})[key] = value
        out = []
        for input_uuid, name, digest, source_type, source, profile in rows:
            own = dict(tags.get(input_uuid, {}))
            try:
                where_from = json.loads(source).get("uri", source)
            except (ValueError, AttributeError):
                where_from = source
            try:
                prof = json.loads(profile) if profile else {}
            except ValueError:
                prof = {}
            out.append(
                {
                    "name": name,
                    "digest": digest,
                    "context": own.pop("mlflow.data.context", None),
                    "source_type": source_type,
                    "source": where_from,
                    "profile": prof,
                    "tags": own,
                }
            )
        return out

    return _with_store(read)
