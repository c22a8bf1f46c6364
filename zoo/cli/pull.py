"""`zoo pull`, `zoo cache ls|verify|rm`, `zoo import`."""

from __future__ import annotations

from typing import Any

import click

from zoo.cli.catalog import _INFO_EXTRAS
from zoo.cli.output import console, emit_json, note


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{n} B"  # pragma: no cover


def _cache_extras(reference: str) -> dict[str, object]:
    from zoo.weights.cache import info_extras

    if reference.startswith("local:"):
        from zoo.weights.local import info_extras as local_extras

        return local_extras(reference)
    return info_extras(reference)


_INFO_EXTRAS.append(_cache_extras)  # `zoo info` shows the cache record / import record


def _is_timeout(exc: BaseException) -> bool:
    """A read or connect timeout from any HTTP client (httpx, requests, urllib, sockets)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, TimeoutError) or "Timeout" in type(current).__name__:
            return True
        current = current.__cause__ or current.__context__
    return False


@click.command("pull")
@click.argument("ref")
@click.option("--revision", metavar="REV", help="Hub branch, tag or commit (same as REF@REV).")
@click.option("--force", is_flag=True, help="Download again even if cached and verified.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (docs/json.md).")
def pull_cmd(ref: str, revision: str | None, force: bool, as_json: bool) -> None:
    """Fetch a backbone's weights into the local cache and verify them by content.

    \b
      zoo pull timm:resnet50.a1_in1k
      zoo pull hf:timm/resnet50.a1_in1k --revision <commit>
      zoo pull torchvision:efficientnet_b0      # ZOO_TORCHVISION_MIRROR=URL for a mirror

    Hub files are checked against the SHA-256 the Hub publishes (LFS ETag), torchvision
    files against the hash prefix in their name; a mismatch deletes the file and exits 4.
    Cached files are checked again on every use: one changed since its pull exits 4
    until `zoo pull --force REF` fetches it again. With HF_HUB_OFFLINE=1 nothing is
    contacted: cached models pull, others fail. A read-only cache serves what it holds.
    """
    from zoo.catalog.build import pull
    from zoo.progress import make_progress

    try:
        pulled = pull(ref, revision=revision, force=force, progress=make_progress())
    except Exception as exc:
        if not _is_timeout(exc):
            raise
        from zoo.contract.errors import OfflineError

        raise OfflineError(
            f"the server for {ref} stopped sending ({type(exc).__name__}: {exc}); nothing was "
            "recorded. Run the same `zoo pull` again (it resumes), or raise "
            "HF_HUB_DOWNLOAD_TIMEOUT on a slow link"
        ) from exc
    from zoo.catalog.index import resolution_note

    said = resolution_note(ref, pulled.reference)
    if said:
        note(said)
    if as_json:
        from zoo.weights.cache import record_to_dict

        emit_json("pull", record=record_to_dict(pulled))
        return
    files = ", ".join(f"{f.name} ({_size(f.size)}, sha256 {f.sha256[:12]})" for f in pulled.files)
    click.echo(f"{pulled.reference}: {files}; licence {pulled.license}")


@click.group("cache")
def cache_group() -> None:
    """The local cache of pulled weights: list, re-verify, remove.

    \b
      zoo cache ls
      zoo cache verify                   # every file; exit 4 names the bad ones
      zoo cache rm timm:resnet50.a1_in1k
    """


@cache_group.command("ls")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (docs/json.md).")
def cache_ls(as_json: bool) -> None:
    """List pulled models: revision, files with their SHA-256 (first 12 hex digits;
    --json has the full values), size, licence, source and time."""
    from zoo.weights.cache import list_records, record_to_dict

    records = list_records()
    if as_json:
        emit_json("cache_list", count=len(records), models=[record_to_dict(r) for r in records])
        return
    from rich.table import Table

    table = Table()
    for col in ("reference", "revision", "files", "sha256", "size", "licence", "source", "pulled"):
        # files and their hashes line up row by row: neither wraps
        table.add_column(col, overflow="fold", no_wrap=col in ("revision", "files", "sha256"))
    for r in records:
        name = r.reference.rsplit("@", 1)[0] if r.revision else r.reference
        table.add_row(
            name,
            (r.revision or "-")[:12],
            "\n".join(f.name for f in r.files),
            "\n".join(f.sha256[:12] for f in r.files),
            _size(sum(f.size for f in r.files)),
            r.license,
            r.source or "",
            r.pulled_at,
        )
    out = console()
    out.print(table)
    out.print(f"{len(records)} models")


@cache_group.command("verify")
@click.argument("ref", required=False)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (docs/json.md).")
def cache_verify(ref: str | None, as_json: bool) -> None:
    """Re-hash cached files (all, or REF's) against the SHA-256 recorded at pull time."""
    from zoo.contract.errors import IntegrityError, NotFoundError
    from zoo.upkeep.cache import verify
    from zoo.weights.cache import list_records, match_records

    records = match_records(ref) if ref else list_records()
    if ref and not records:
        raise NotFoundError(f"nothing cached for '{ref}': see `zoo cache ls`")
    results = verify(records)
    bad = [r for r in results if not r.ok]
    if as_json:
        emit_json(
            "cache_verify",
            ok=not bad,
            files=[r.__dict__ for r in results],
        )
    else:
        for r in results:
            status = "ok" if r.ok else f"BAD ({r.problem})"
            click.echo(f"{r.reference} {r.name}: {status}")
    if bad:
        names = ", ".join(f"{r.reference} {r.name} ({r.path})" for r in bad)
        raise IntegrityError(
            f"{len(bad)} cached file(s) do not match: {names}; run `zoo pull REF --force` "
            "to fetch them again"
        )
    if not as_json:
        note(f"{len(results)} files verified")


@cache_group.command("rm")
@click.argument("ref")
def cache_rm(ref: str) -> None:
    """Remove one pulled revision's files and record (Hub files through huggingface_hub's
    cache API)."""
    from zoo.upkeep.cache import remove

    for rec in remove(ref):
        size = _size(sum(f.size for f in rec.files))
        click.echo(f"removed {rec.reference} ({size})")


@click.command("import")
@click.argument("path", type=click.Path(dir_okay=False, path_type=str))
@click.option("--arch", required=True, metavar="REF", help="Architecture, e.g. timm:resnet50.")
@click.option("--license", "license_", required=True, metavar="ID", help="Licence id.")
@click.option("--name", required=True, help="The local name: the model becomes local:NAME.")
@click.option(
    "--map-by",
    type=click.Choice(["name", "order"]),
    default="name",
    show_default=True,
    help="Match tensors by name, or by order and shape when the names differ.",
)
@click.option(
    "--trust-pickle",
    is_flag=True,
    help="Allow a pickle that needs more than tensors (it can run code). Never the default.",
)
@click.option("--force", is_flag=True, help="Replace an existing local:NAME.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (docs/json.md).")
def import_cmd(
    path: str,
    arch: str,
    license_: str,
    name: str,
    map_by: str,
    trust_pickle: bool,
    force: bool,
    as_json: bool,
) -> None:
    """Import a checkpoint of your own as the base model local:NAME.

    \b
      zoo import ./weights.pth --arch timm:tf_efficientnet_lite0 --map-by order \\
          --license apache-2.0 --name lite0

    The format is read from the content (safetensors, torch zip, pickle), never from
    the file name; pickles load with torch.load(weights_only=True) and anything that
    needs more is refused (exit 4) unless --trust-pickle. Stored as safetensors.
    """
    from zoo.catalog.imports import import_checkpoint
    from zoo.disk.paths import require_writable

    require_writable("zoo import (the model goes to ZOO_HOME/local)")  # before any reading
    model = import_checkpoint(
        path,
        arch=arch,
        license=license_,
        name=name,
        map_by=map_by,  # type: ignore[arg-type]
        trust_pickle=trust_pickle,
        force=force,
        on_note=note,  # e.g. "--arch timm:resnet50 resolved to timm:resnet50.a1_in1k (...)"
    )
    if as_json:
        emit_json("import", model=model.to_dict())
        return
    extra: dict[str, Any] = {"classes": model.num_classes}
    click.echo(
        f"imported {model.reference} ({model.arch}, {model.source_format}, "
        f"{extra['classes']} classes, licence {model.license}, sha256 {model.sha256[:12]})"
    )


COMMANDS = [pull_cmd, cache_group, import_cmd]
