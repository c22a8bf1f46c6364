"""Checkpoint files: format by content, loading that never runs code, tensor mapping.

A pickle can run any code when it is loaded, and a file's extension says nothing about
what is inside (a pickle renamed ``*.safetensors`` is still a pickle). So the format is
decided from the first bytes, safetensors load directly, and zip/pickle checkpoints go
through ``torch.load(weights_only=True)``, PyTorch's restricted unpickler that accepts
tensors and plain containers only. Anything that needs more is refused with
:class:`SecurityError`; ``trust_pickle=True`` (``zoo import --trust-pickle``) is the
user's explicit decision and never a default.

:func:`load_weights` is the one load path: it returns the tensors with the SHA-256 of the
bytes they were parsed from (:class:`LoadedWeights`), and refuses a cached file that no
longer matches the SHA-256 pinned when it was pulled (:func:`zoo.weights.cache.pin_for`; hashed
again only when the file's size, times or inode changed since it was last hashed).
:func:`recording_loads` collects what a block loaded: the engine takes a parent's
SHA-256 from there, not from a record.
"""

from __future__ import annotations

import contextvars
import hashlib
import json
import os
import struct
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Literal

from zoo.contract.errors import DataError, IntegrityError, NotFoundError, SecurityError, UsageError

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = [
    "FORMATS",
    "LoadedWeights",
    "detect_format",
    "load_state_dict",
    "load_weights",
    "map_state_dict",
    "nonfinite_tensors",
    "recording_loads",
    "require_regular_file",
    "save_safetensors",
]

Format = Literal["safetensors", "zip", "pickle"]
FORMATS: tuple[str, ...] = ("safetensors", "zip", "pickle")

_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
_MAX_HEADER = 100 * 1024 * 1024  # safetensors caps its JSON header at 100 MB
# Containers checkpoints commonly wrap a state dict in.
_WRAPPERS = ("state_dict", "model_state_dict", "model", "module", "net", "params", "ema")


def require_regular_file(path: Path) -> None:
    """Refuse FIFOs, devices and sockets before opening them: reading one blocks forever
    or never ends."""
    import stat

    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise NotFoundError(f"no such checkpoint file: {path}") from None
    except OSError as exc:
        raise UsageError(f"{path} cannot be read ({exc.strerror}): give a checkpoint") from None
    if stat.S_ISDIR(mode):
        raise UsageError(f"{path} is a folder: give the checkpoint file itself")
    if not stat.S_ISREG(mode):
        kind = "a FIFO" if stat.S_ISFIFO(mode) else "a device or socket"
        raise UsageError(f"{path} is {kind}, not a regular file: give the checkpoint file itself")


def nonfinite_tensors(tensors: Mapping[str, torch.Tensor]) -> list[str]:
    """Names of floating-point tensors holding NaN or infinity."""
    import torch

    bad = []
    for name, value in tensors.items():
        if (
            isinstance(value, torch.Tensor)
            and value.is_floating_point()
            and not bool(torch.isfinite(value).all())
        ):
            bad.append(name)
    return bad


def detect_format(path: str | Path) -> Format:
    """``safetensors``, ``zip`` (torch.save's default) or ``pickle`` (legacy torch.save,
    plain pickle), read from the content; anything else raises :class:`DataError`."""
    path = Path(path)
    require_regular_file(path)
    try:
        size = path.stat().st_size
        with path.open("rb") as fh:
            head = fh.read(9)
            if len(head) >= 9:
                (n,) = struct.unpack("<Q", head[:8])
                if head[8:9] == b"{" and 2 <= n <= min(_MAX_HEADER, size - 8):
                    fh.seek(8)
                    try:
                        header = json.loads(fh.read(n))
                    except ValueError:
                        header = None
                    if isinstance(header, dict):
                        return "safetensors"
    except FileNotFoundError:
        raise NotFoundError(f"no such checkpoint file: {path}") from None
    except IsADirectoryError:
        raise UsageError(f"{path} is a folder: give the checkpoint file itself") from None
    if head[:4] in _ZIP_MAGIC:
        return "zip"
    # Pickle protocol 2+ starts with PROTO (0x80) and the protocol number; protocols 0
    # and 1 start with an opcode such as '(' (MARK), '}' (EMPTY_DICT) or ']' (EMPTY_LIST).
    if (head[:1] == b"\x80" and 2 <= head[1] <= 5) or head[:1] in (b"(", b"}", b"]", b"c"):
        return "pickle"
    raise DataError(
        f"{path} is not a checkpoint zoo can read: not safetensors, a torch zip file or "
        "a pickle (format is decided by content, not by the file name)"
    )


def _unwrap(obj: Any) -> dict[str, torch.Tensor]:
    import torch

    if isinstance(obj, torch.nn.Module):
        obj = obj.state_dict()
    for _ in range(3):
        if isinstance(obj, Mapping) and not any(isinstance(v, torch.Tensor) for v in obj.values()):
            inner = next((obj[k] for k in _WRAPPERS if isinstance(obj.get(k), Mapping)), None)
            if inner is None:
                break
            obj = inner
    if not isinstance(obj, Mapping):
        raise DataError(f"the checkpoint holds a {type(obj).__name__}, not a state dict")
    tensors = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise DataError("the checkpoint holds no tensors")
    if all(k.startswith("module.") for k in tensors):  # saved from DataParallel / DDP
        tensors = {k[len("module.") :]: v for k, v in tensors.items()}
    return tensors


@dataclass(frozen=True)
class LoadedWeights:
    """A weights file as it was loaded: where, in which format, and the SHA-256 of the
    bytes its tensors came from."""

    path: str
    sha256: str
    format: str
    tensors: dict[str, torch.Tensor] = field(default_factory=dict, repr=False, compare=False)


_LOADS: contextvars.ContextVar[list[LoadedWeights] | None] = contextvars.ContextVar(
    "zoo_loads", default=None
)


@contextmanager
def recording_loads() -> Iterator[list[LoadedWeights]]:
    """``with recording_loads() as loaded:`` every weights file loaded in the block, in
    order (without their tensors)."""
    loaded: list[LoadedWeights] = []
    token = _LOADS.set(loaded)
    try:
        yield loaded
    finally:
        _LOADS.reset(token)


def _sha256_of(fh: IO[bytes]) -> str:
    digest = hashlib.sha256()
    while chunk := fh.read(1 << 20):
        digest.update(chunk)
    fh.seek(0)
    return digest.hexdigest()


def load_weights(path: str | Path, *, trust_pickle: bool = False) -> LoadedWeights:
    """Tensors of a checkpoint, in the file's order, loaded without running its code,
    with the SHA-256 of the bytes loaded; a cached file that no longer matches its pin is
    refused (:class:`IntegrityError`) before its tensors are used."""
    from zoo.weights.cache import file_stat, pin_for

    path = Path(path)
    fmt = detect_format(path)
    pin = pin_for(path)
    with path.open("rb") as fh:
        stat = file_stat(path, os.fstat(fh.fileno()))
        if pin is not None and pin.vouches_for(stat):
            sha256 = pin.sha256  # the very file hashed before: same size, times, inode
        else:
            sha256 = _sha256_of(fh)
            if pin is not None:
                pin.check(sha256, stat)
        tensors = _parse(path, fh, fmt, trust_pickle)
        if file_stat(path) != stat:
            raise IntegrityError(
                f"{path} changed while it was being loaded: nothing was done with it; run "
                "the command again once whatever writes it has finished"
            )
    loaded = LoadedWeights(str(path), sha256, fmt, tensors)
    recorded = _LOADS.get()
    if recorded is not None:
        recorded.append(replace(loaded, tensors={}))
    return loaded


def load_state_dict(path: str | Path, *, trust_pickle: bool = False) -> dict[str, torch.Tensor]:
    """Tensors of a checkpoint (:func:`load_weights` without the hash)."""
    return load_weights(path, trust_pickle=trust_pickle).tensors


def _parse(path: Path, fh: IO[bytes], fmt: Format, trust_pickle: bool) -> dict[str, torch.Tensor]:
    import torch

    if fmt == "safetensors":
        from safetensors.torch import load_file

        try:
            return dict(load_file(str(path), device="cpu"))
        except Exception as exc:
            raise DataError(f"{path} has a safetensors header but does not load: {exc}") from exc
    # torch.load is given an open file, never the path: given a path it picks a loader
    # by the file's extension (a zip named *.safetensors goes to safetensors).
    if trust_pickle:
        return _unwrap(torch.load(fh, map_location="cpu", weights_only=False))
    import pickle

    try:
        obj = torch.load(fh, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, AttributeError, TypeError) as exc:
        raise SecurityError(
            f"{path} is a {fmt} checkpoint that needs more than tensors to load (it could "
            "run code): refused. Re-save it as safetensors, or pass --trust-pickle only if "
            "you trust whoever made the file"
        ) from exc
    return _unwrap(obj)


def map_state_dict(
    source: Mapping[str, torch.Tensor],
    target: Mapping[str, torch.Tensor],
    *,
    by: Literal["name", "order"] = "name",
) -> dict[str, torch.Tensor]:
    """``source``'s tensors under ``target``'s names; refuses unless every tensor fits.

    ``by="name"``: the names must be the same sets and every shape must match.
    ``by="order"``: the n-th tensor of ``source`` becomes the n-th of ``target``; both
    must have the same count and every shape must match (the check that catches two
    layouts that merely happen to have the same length).
    """
    src, tgt = list(source.items()), list(target.items())
    if by == "name":
        missing = [k for k in target if k not in source]
        unexpected = [k for k in source if k not in target]
        if missing or unexpected:
            hint = "the names differ: if the tensors are in the same order, use --map-by order"
            detail = []
            if missing:
                detail.append(f"{len(missing)} missing (e.g. {missing[0]})")
            if unexpected:
                detail.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
            raise UsageError(
                f"the checkpoint does not fit the architecture: {', '.join(detail)}; {hint}"
            )
        pairs = [(k, source[k], v) for k, v in tgt]
    elif by == "order":
        if len(src) != len(tgt):
            raise UsageError(
                f"--map-by order needs as many tensors as the architecture has: the "
                f"checkpoint has {len(src)}, the architecture {len(tgt)}"
            )
        pairs = [(tk, sv, tv) for (_, sv), (tk, tv) in zip(src, tgt, strict=True)]
    else:
        raise UsageError(f"unknown --map-by '{by}': use name or order")
    out: dict[str, torch.Tensor] = {}
    for i, (name, value, want) in enumerate(pairs):
        if tuple(value.shape) != tuple(want.shape):
            src_name = src[i][0] if by == "order" else name
            raise UsageError(
                f"tensor {i} ('{src_name}' -> '{name}') has shape {tuple(value.shape)}, the "
                f"architecture needs {tuple(want.shape)}: this checkpoint is not for that "
                "architecture (check --arch)"
            )
        out[name] = value.to(want.dtype) if value.dtype != want.dtype else value
    return out


def save_safetensors(
    tensors: Mapping[str, torch.Tensor], path: Path, metadata: dict[str, str] | None = None
) -> None:
    """Write tensors as safetensors atomically (``zoo.disk.paths.atomic_write_bytes``)."""
    from safetensors.torch import save

    from zoo.disk.paths import atomic_write_bytes

    # clone: safetensors refuses tensors that share storage (tied weights)
    blob = save({k: v.detach().clone().contiguous() for k, v in tensors.items()}, metadata=metadata)
    atomic_write_bytes(path, blob)
