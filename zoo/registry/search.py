"""Versions by filter, all of them or a page at a time: an SQLite store read directly
(:mod:`zoo.registry.sqlite_read`), any other store through MLflow's
``search_model_versions`` with the filter on the store's side, MLflow's own page tokens
and (name, version) order.

What MLflow answers is checked again with the filter (its filter language is a superset
of what zoo asks: :mod:`zoo.registry.paging`), so both paths give the same versions.
Aliases, which MLflow's search leaves out, are read once per model answered.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from zoo.contract.errors import UsageError
from zoo.registry import sqlite_read
from zoo.registry.paging import (
    ORDER_BY,
    Page,
    Position,
    VersionFilter,
    decode_token,
    encode_token,
    quoted,
)
from zoo.registry.records import RegisteredVersion, from_model_version

__all__ = ["find", "page", "tag_values"]

STORE_PAGE = 1000  # versions per request when every match is wanted
ALIAS_LOOKUPS = 50  # models whose aliases are asked one by one (more: list every model)


def _key(v: RegisteredVersion) -> tuple[str, int]:
    return (v.name, v.version)


def _search(
    mc: Any, f: VersionFilter, size: int, token: str | None
) -> tuple[list[Any], str | None]:
    """One page of MLflow's search and its next page's token (a str: MLflow's SQL store
    hands out bytes, a server str)."""
    got = mc.search_model_versions(
        f.mlflow_filter(), max_results=size, order_by=ORDER_BY, page_token=token
    )
    nxt = got.token.decode("ascii") if isinstance(got.token, bytes) else got.token
    return list(got), nxt or None


def _every(mc: Any, f: VersionFilter) -> Iterator[RegisteredVersion]:
    token = None
    while True:
        rows, token = _search(mc, f, STORE_PAGE, token)
        yield from (v for v in map(from_model_version, rows) if f.matches(v))
        if not token:
            return


def with_aliases(mc: Any, found: list[RegisteredVersion]) -> list[RegisteredVersion]:
    """``found`` with the aliases of their models: one request per model, or, for more
    than :data:`ALIAS_LOOKUPS` models, MLflow's listing of every model (a request per
    1,000 models)."""
    from dataclasses import replace

    names = sorted({v.name for v in found})
    if len(names) > ALIAS_LOOKUPS:
        models, token = [], None
        while True:
            got = mc.search_registered_models(max_results=1000, page_token=token)
            models += [rm for rm in got if rm.name in names]
            token = got.token
            if not token:
                break
    else:
        models = [rm for got in _each_model(mc, names) for rm in got]
    aliases: dict[tuple[str, int], list[str]] = {}
    for rm in models:
        for alias, version in (rm.aliases or {}).items():
            aliases.setdefault((rm.name, int(version)), []).append(alias)
    return [
        replace(v, aliases=tuple(sorted(aliases[_key(v)]))) if _key(v) in aliases else v
        for v in found
    ]


def _each_model(mc: Any, names: list[str]) -> list[Any]:
    """MLflow's answer for each model name: on a server, several requests at once (each
    waits on the network; MLflow's HTTP session pools its connections)."""

    def one(name: str) -> list[Any]:
        return list(mc.search_registered_models(f"name = {quoted(name)}"))

    from zoo.registry.store import tracking_uri

    if len(names) < 2 or not tracking_uri().startswith(("http://", "https://")):
        return [one(n) for n in names]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=min(8, len(names))) as pool:
        return list(pool.map(one, names))


def find(*filters: VersionFilter) -> list[RegisteredVersion]:
    """Every version that matches any of ``filters`` (no filter: every version), by
    name and number."""
    direct = sqlite_read.versions(filters)
    if direct is not None:
        return direct
    from zoo.registry.store import client

    mc = client()
    seen: dict[tuple[str, int], RegisteredVersion] = {}
    for f in filters or (VersionFilter(),):
        for v in _every(mc, f):
            seen[_key(v)] = v
    return with_aliases(mc, sorted(seen.values(), key=_key))


def page(f: VersionFilter, *, limit: int | None, token: str | None = None) -> Page:
    """``limit`` versions matching ``f`` (None: all of them) from where ``token`` (the
    previous page's ``next_page_token``) left off."""
    if limit is not None and limit < 1:
        raise UsageError(f"--limit {limit}: give a positive number of versions per page")
    at = decode_token(token, f)
    if not isinstance(at.cursor, str):
        offset = at.cursor or 0
        direct = sqlite_read.page(f, limit=limit, offset=offset)
        if direct is not None:
            found, total = direct
            after = offset + len(found)
            more = Position(after, 0, 0, after) if limit is not None and after < total else None
            nxt = encode_token(more, f) if more else None
            return Page(found, nxt, offset, total)
    if at.cursor is not None and not isinstance(at.cursor, str):
        raise UsageError(
            f"--page-token '{token}' was printed by a listing of another store: start "
            "again without --page-token"
        )
    return _mlflow_page(f, limit, at, token)


def _mlflow_page(f: VersionFilter, limit: int | None, at: Position, token: str | None) -> Page:
    from zoo.registry.store import client

    mc = client()
    if limit is None:
        found = list(_every(mc, f))
        return Page(with_aliases(mc, found), None, 0, len(found))
    size = at.size or limit
    cursor, skip = at.cursor, at.skip
    out: list[RegisteredVersion] = []
    try:
        while True:
            rows, nxt = _search(mc, f, size, cursor if isinstance(cursor, str) else None)
            for i in range(skip, len(rows)):
                v = from_model_version(rows[i])
                if f.matches(v):
                    out.append(v)
                if len(out) == limit:
                    if i + 1 < len(rows):
                        more: Position | None = Position(cursor, i + 1, size, at.shown + limit)
                    else:
                        more = Position(nxt, 0, size, at.shown + limit) if nxt else None
                    total = None if more else at.shown + limit
                    token_out = encode_token(more, f) if more else None
                    return Page(with_aliases(mc, out), token_out, at.shown, total)
            if not nxt:
                total = at.shown + len(out)
                return Page(with_aliases(mc, out), None, at.shown, total)
            cursor, skip = nxt, 0
    except Exception as exc:
        if token and getattr(exc, "error_code", "") == "INVALID_PARAMETER_VALUE":
            raise UsageError(
                f"--page-token '{token}' is not one this store accepts ({exc}): start again "
                "without --page-token"
            ) from None
        raise


def tag_values(key: str, text: str) -> list[str]:
    """The distinct values of tag ``key`` containing ``text`` on live versions."""
    direct = sqlite_read.tag_values(key, text)
    if direct is not None:
        return direct
    from zoo.registry.store import client

    found = _every(client(), VersionFilter(contains=((key, text),)))
    return sorted({v.tags[key] for v in found})
