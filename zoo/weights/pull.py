"""Pulling weights into the local cache, verified by content, for any provider.

Providers call :func:`pull_hub` (a Hugging Face Hub repo: timm and hf references) or
:func:`pull_url` (a plain file: torchvision); `zoo pull` resolves the provider first
(:func:`zoo.catalog.build.pull`).

The Hub path uses ``huggingface_hub`` itself (its cache layout, locks, resume, offline
mode) and adds what it lacks: the client checks only sizes, so zoo hashes every file it
fetched against the name the Hub gave it (a blob is named by its ETag: the LFS SHA-256,
or git's SHA-1 for small files) and on a mismatch deletes the blob and its snapshot link.

Requests are kept to what the answer needs: a pull pinned to a commit that is already
recorded makes none; an unpinned one makes one ``HEAD`` to learn the current commit.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from zoo.contract.errors import (
    IntegrityError,
    NotCachedError,
    NotFoundError,
    OfflineError,
    UnknownModelError,
)
from zoo.contract.protocols import Progress
from zoo.contract.types import FileRecord, PulledWeights
from zoo.disk.paths import ReadOnlyHomeError
from zoo.weights.cache import find_record, records_dir, save_record, verified_files
from zoo.weights.download import (
    file_lock,
    git_blob_sha1,
    is_offline,
    offline_variables,
    sha256_file,
    ways_out,
)
from zoo.weights.pull_url import pull_url, utc_now, writable_or_refuse

__all__ = ["WEIGHT_FILES", "hf_cache_dir", "hf_endpoint", "pull_hub", "pull_url"]

# The Hub's weight files, safetensors first: never unpickle when the source has better.
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")


def hf_endpoint() -> str:
    """HF_ENDPOINT, read at call time (huggingface_hub reads it once, at import)."""
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


def hf_cache_dir() -> str:
    """The Hugging Face hub cache folder, read from the environment at call time."""
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    if os.environ.get("HF_HOME"):
        return str(Path(os.environ["HF_HOME"]) / "hub")
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)


def _bar_class(progress: Progress | None, label: str) -> Any:
    """A tqdm-compatible class that forwards huggingface_hub's byte counts to ``progress``
    (silent when there is none, so the client draws no bars of its own)."""

    class Bar:
        def __init__(self, *args: Any, total: float | None = None, initial: float = 0,
                     desc: str | None = None, **kwargs: Any) -> None:  # fmt: skip
            self.n = initial
            if progress is not None:
                progress.start(f"downloading {label}", total, unit="bytes")
                if initial:
                    progress.advance(initial)

        def update(self, n: float = 1) -> None:
            self.n += n
            if progress is not None:
                progress.advance(n)

        def close(self) -> None:
            if progress is not None:
                progress.finish()

        def __enter__(self) -> Bar:
            return self

        def __exit__(self, *exc: object) -> None:
            self.close()

    return Bar


# ----------------------------------------------------------------------------- the Hub


def _verify_hub_file(path: str, filename: str, expected_etag: str | None = None) -> FileRecord:
    """Hash a downloaded Hub file against its ETag; on mismatch remove blob and link."""
    snapshot = Path(path)
    blob = snapshot.resolve()
    etag = expected_etag or blob.name
    digest = sha256_file(blob)
    if len(etag) == 64:
        ok = digest == etag
        kind = "LFS SHA-256"
    elif len(etag) == 40:
        ok = git_blob_sha1(blob) == etag
        kind = "git SHA-1"
    else:
        raise IntegrityError(
            f"{filename}: the Hub gave no content hash (ETag '{etag}'), so it cannot be "
            "verified; refused"
        )
    if not ok:
        blob.unlink(missing_ok=True)
        if snapshot.is_symlink() or snapshot.exists():
            snapshot.unlink(missing_ok=True)
        raise IntegrityError(
            f"{filename} does not match the {kind} the Hub published ({etag}): the "
            "downloaded file was removed from the cache; pull again, and if it fails again "
            "the source or a proxy is serving bad bytes"
        )
    return FileRecord(filename, str(snapshot), digest, blob.stat().st_size)


def _hub_errors() -> tuple[type[BaseException], ...]:
    from huggingface_hub.errors import EntryNotFoundError, RemoteEntryNotFoundError

    return (EntryNotFoundError, RemoteEntryNotFoundError)


def _download(
    repo_id: str,
    filename: str,
    commit: str,
    *,
    force: bool,
    progress: Progress | None,
    local_only: bool = False,
) -> str:
    from huggingface_hub import hf_hub_download

    return str(
        hf_hub_download(
            repo_id,
            filename,
            revision=commit,
            cache_dir=hf_cache_dir(),
            endpoint=hf_endpoint(),
            force_download=force,
            local_files_only=local_only,
            tqdm_class=_bar_class(progress, filename),
        )
    )


def _not_cached(label: str, why: str) -> NotCachedError:
    return NotCachedError(f"{label} is not in the local cache and {why}: {ways_out(label)}")


def _from_local_cache(
    *,
    label: str,
    provider: str,
    name: str,
    repo_id: str,
    revision: str | None,
    weights: Sequence[str],
    required: Sequence[str],
    optional: Sequence[str],
    make: Callable[[str, list[FileRecord], dict[str, Path]], PulledWeights],
    why: str,
) -> PulledWeights:
    """Offline: the files the local Hugging Face cache already holds, verified."""
    from huggingface_hub.errors import LocalEntryNotFoundError

    missing: tuple[type[BaseException], ...] = (LocalEntryNotFoundError, *_hub_errors())
    for weights_name in weights:
        try:
            path = _download(repo_id, weights_name, revision or "main", force=False,
                             progress=None, local_only=True)  # fmt: skip
        except missing:
            continue
        commit = Path(path).parents[len(Path(weights_name).parts) - 1].name
        rec = find_record(provider, name, commit)
        if rec is not None and verified_files(rec):
            return rec
        records = [_verify_hub_file(path, weights_name)]
        paths = {weights_name: Path(path)}
        for extra in (*required, *optional):
            try:
                p = _download(repo_id, extra, commit, force=False, progress=None, local_only=True)
            except missing:
                if extra in required:
                    raise _not_cached(label, why) from None
                continue
            records.append(_verify_hub_file(p, extra))
            paths[extra] = Path(p)
        pulled = make(commit, records, paths)
        # a read-only cache: the files are verified; the record is for next time
        with contextlib.suppress(OSError, ReadOnlyHomeError):
            save_record(pulled)
        return pulled
    raise _not_cached(label, why)


def _write_ref(repo_id: str, revision: str, commit: str) -> None:
    """Record branch/tag -> commit in the HF cache (``refs/REV``), as the client does when
    it resolves a branch itself: offline tools (zoo, timm, transformers) read it."""
    from huggingface_hub.file_download import repo_folder_name

    from zoo.disk.paths import atomic_write_text

    ref_path = Path(hf_cache_dir()) / repo_folder_name(repo_id=repo_id, repo_type="model")
    ref_path = ref_path / "refs" / revision
    try:
        if ref_path.read_text(encoding="utf-8").strip() == commit:
            return
    except OSError:
        pass
    with contextlib.suppress(OSError):  # a read-only cache: the pull itself says so if it writes
        atomic_write_text(ref_path, commit)


def pull_hub(
    *,
    provider: str,
    name: str,
    repo_id: str,
    revision: str | None = None,
    weights: Sequence[str] = WEIGHT_FILES,
    required: Sequence[str] = (),
    optional: Sequence[str] = (),
    license: str | Callable[[dict[str, Path]], str] = "unknown",
    force: bool = False,
    progress: Progress | None = None,
    timeout: float = 10.0,
) -> PulledWeights:
    """Pull one weights file (the first of ``weights`` the repo has) plus ``required`` and
    ``optional`` files of a Hub repo, verify them, and record them as
    ``{provider}:{name}@{commit}``. ``license`` is an id or a function of the fetched
    files (an hf repo's model card)."""
    label = f"{provider}:{name}" + (f"@{revision}" if revision else "")
    source = f"{hf_endpoint()}/{repo_id}"

    def make(commit: str, files: list[FileRecord], paths: dict[str, Path]) -> PulledWeights:
        lic = license(paths) if callable(license) else license
        return PulledWeights(
            reference=f"{provider}:{name}@{commit}",
            provider=provider,
            revision=commit,
            files=tuple(files),
            license=lic,
            source=source,
            pulled_at=utc_now(),
            extra={"storage": "hf", "repo_id": repo_id, "cache_dir": hf_cache_dir()},
        )

    common: dict[str, Any] = dict(
        label=label, provider=provider, name=name, repo_id=repo_id, revision=revision,
        required=required, optional=optional, make=make,
    )  # fmt: skip
    with file_lock(f"hf-{repo_id}"):
        if revision and _COMMIT.match(revision) and not force:
            rec = find_record(provider, name, revision)
            if rec is not None and verified_files(rec):
                return rec  # pinned and recorded: no request at all
        previous = find_record(provider, name)
        candidates = list(weights)
        if previous is not None and previous.weights_file.name in candidates:
            candidates.remove(previous.weights_file.name)
            candidates.insert(0, previous.weights_file.name)
        if is_offline():
            if revision is None and previous is not None and verified_files(previous):
                return previous
            return _from_local_cache(
                weights=candidates,
                why=f"offline mode is on ({', '.join(offline_variables())})",
                **common,
            )

        from huggingface_hub import get_hf_file_metadata, hf_hub_url
        from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError

        meta, weights_name = None, None
        for candidate in candidates:
            url = hf_hub_url(repo_id, candidate, revision=revision or "main",
                             endpoint=hf_endpoint())  # fmt: skip
            try:
                meta = get_hf_file_metadata(url, timeout=timeout, endpoint=hf_endpoint())
            except _hub_errors():
                continue
            except RepositoryNotFoundError:
                raise UnknownModelError(
                    f"the Hub at {hf_endpoint()} has no model repo '{repo_id}' (or it is "
                    "private: log in with `hf auth login`)"
                ) from None
            except RevisionNotFoundError:
                raise UnknownModelError(
                    f"'{repo_id}' has no revision '{revision}': give a branch, tag or commit"
                ) from None
            except Exception as exc:  # network: fall back on what is cached
                try:
                    return _from_local_cache(
                        weights=candidates,
                        why=f"the Hub at {hf_endpoint()} is not reachable ({type(exc).__name__})",
                        **common,
                    )
                except NotCachedError as inner:
                    raise OfflineError(str(inner)) from None
            weights_name = candidate
            break
        if meta is None or weights_name is None:
            raise NotFoundError(
                f"'{repo_id}' has no weights file zoo can load (looked for {', '.join(candidates)})"
            )
        commit = meta.commit_hash
        if commit is None:
            raise IntegrityError(f"the Hub gave no commit for {repo_id}: cannot pin it")
        if revision != commit:
            _write_ref(repo_id, revision or "main", commit)
        if not force:
            rec = find_record(provider, name, commit)
            if rec is not None and rec.weights_file.name == weights_name and verified_files(rec):
                return rec  # one HEAD, no GET
        expected = (meta.etag or "").strip('"') or None
        writable_or_refuse(Path(hf_cache_dir()), label, "HF_HUB_CACHE")
        writable_or_refuse(records_dir(provider), label, "ZOO_HOME")
        path = _download(repo_id, weights_name, commit, force=force, progress=progress)
        records = [_verify_hub_file(path, weights_name, expected)]
        paths = {weights_name: Path(path)}
        for extra in (*required, *optional):
            try:
                p = _download(repo_id, extra, commit, force=force, progress=None)
            except _hub_errors():
                if extra in required:
                    raise NotFoundError(f"'{repo_id}' has no {extra}") from None
                continue
            records.append(_verify_hub_file(p, extra))
            paths[extra] = Path(p)
        pulled = make(commit, records, paths)
        save_record(pulled)
        return pulled
