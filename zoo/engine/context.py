"""Where and how the run computes: device, precision, memory format, processes."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from zoo.contract.errors import UsageError
from zoo.data.workers import avoid_fork

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch import nn

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "DEFAULT_WAIT_S",
    "Dist",
    "Runtime",
    "collective_timeout",
    "resolve_runtime",
    "stop_on_signals",
    "stopping",
    "wait_timeout",
]


# Every collective of a job gives up after this many seconds (``ZOO_DIST_TIMEOUT``): a
# process that died or hangs stops the others within it, not after torch's default of
# 10 (NCCL) or 30 (gloo) minutes.
DEFAULT_TIMEOUT_S = 300
# Waits for work one process does alone (each node's data check and decode, rank 0's
# registration) may last longer (``ZOO_DIST_WAIT``). They run over gloo, which notices at
# once when the process waited for dies; a failure there is sent to every process.
DEFAULT_WAIT_S = 7200


def _seconds(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise UsageError(f"{name}={raw!r} is not a number of seconds (a whole number >= 1)")
    return value


def collective_timeout() -> int:
    return _seconds("ZOO_DIST_TIMEOUT", DEFAULT_TIMEOUT_S)


def wait_timeout() -> int:
    return max(collective_timeout(), _seconds("ZOO_DIST_WAIT", DEFAULT_WAIT_S))


_STOPPING = [False]


def stop_on_signals() -> None:
    """In a torchrun worker: SIGTERM (torchrun stopping the job because a process ended)
    and SIGINT end the run as Ctrl-C does, once: a second signal (torchrun forwards the
    terminal's Ctrl-C) does not break the clean-up that saves and reports."""
    import signal

    def handler(signum: int, frame: Any) -> None:
        if _STOPPING[0]:
            return
        _STOPPING[0] = True
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    default_hook = sys.unraisablehook

    def unraisable(info: Any) -> None:
        # torchrun stops a process's DataLoader workers with it; their teardown's
        # complaints say nothing the stopping run's own message does not
        if not _STOPPING[0]:
            default_hook(info)

    sys.unraisablehook = unraisable


def stopping() -> None:
    """The run is already ending (an error is on its way out): later signals wait."""
    _STOPPING[0] = True


def _outcome(fn: Callable[[], Any]) -> tuple[Any, BaseException | None, tuple[str, str] | None]:
    """Run ``fn``: (value, exception, (error class, message) to send) ."""
    from zoo.contract import errors

    try:
        return fn(), None, None
    except errors.ZooError as exc:
        return None, exc, (type(exc).__name__, str(exc))
    except KeyboardInterrupt as exc:
        return None, exc, ("Interrupted", "another process of the job was interrupted")
    except Exception as exc:
        return (
            None,
            exc,
            ("ZooError", f"another process of the job failed: {type(exc).__name__}: {exc}"),
        )


def _raise(sent: tuple[str, str]) -> None:
    from zoo.contract import errors

    cls = getattr(errors, sent[0], errors.ZooError)
    if not (isinstance(cls, type) and issubclass(cls, errors.ZooError)):
        cls = errors.ZooError
    raise cls(sent[1])


@dataclass
class Dist:
    """torch.distributed as torchrun sets it up (world 1: a single process).

    Tensor collectives run on ``device`` (the process's GPU under NCCL); objects and the
    exchange of failures go over gloo. When one process fails where the others wait for
    it (:meth:`first`, :meth:`agree`), the others raise the same error with the same
    message instead of waiting for a timeout.
    """

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: str = "cpu"  # where tensor collectives run
    _objects: Any = field(default=None, repr=False)  # gloo group for objects
    _waits: Any = field(default=None, repr=False)  # gloo group with the long timeout

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def node_main(self) -> bool:
        """The first process on its node: it reads and writes that node's zoo home."""
        return self.local_rank == 0

    @classmethod
    def from_env(cls) -> Dist:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls()
        return cls(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))

    def init(self, device_type: str) -> None:
        """Join the process group: NCCL on this process's GPU (``LOCAL_RANK``), else gloo."""
        if self.world <= 1:
            return
        from datetime import timedelta

        import torch
        import torch.distributed as dist

        timeout = timedelta(seconds=collective_timeout())
        if device_type == "cuda":
            torch.cuda.set_device(self.local_rank)
            device = torch.device("cuda", self.local_rank)
            self.device = str(device)
            if not dist.is_initialized():
                dist.init_process_group("nccl", timeout=timeout, device_id=device)
            self._objects = dist.new_group(backend="gloo", timeout=timeout)
        elif not dist.is_initialized():
            dist.init_process_group("gloo", timeout=timeout)
        self._waits = dist.new_group(backend="gloo", timeout=timedelta(seconds=wait_timeout()))
        avoid_fork()  # gloo's threads run now: workers start from a forkserver

    def close(self) -> None:
        """Leave the process group (every group zoo made with it)."""
        if self.world > 1:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()

    def barrier(self) -> None:
        if self.world > 1:
            import torch.distributed as dist

            dist.barrier(group=self._objects)

    def all_sum(self, values: torch.Tensor) -> torch.Tensor:
        """Sum a tensor over the processes, on the tensor's device (in place)."""
        if self.world > 1:
            import torch.distributed as dist

            dist.all_reduce(values)
        return values

    def gather(self, obj: Any) -> list[Any]:
        if self.world <= 1:
            return [obj]
        import torch.distributed as dist

        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, obj, group=self._objects)
        return out

    def share(self, n: int) -> range:
        """This process's rows of an ``n``-row pass where each computes a part:
        ``rank, rank + world, ...`` (each writes its own shard of a row cache:
        :mod:`zoo.engine.rows`)."""
        return range(self.rank, n, self.world)

    def broadcast(self, obj: Any, src: int = 0, *, wait: bool = False) -> Any:
        """``obj`` of process ``src``, on every process (plain values and tensors)."""
        if self.world <= 1:
            return obj
        import torch.distributed as dist

        box = [obj if self.rank == src else None]
        dist.broadcast_object_list(box, src=src, group=self._waits if wait else self._objects)
        return box[0]

    def broadcast_module(self, module: nn.Module, src: int = 0) -> None:
        """Every parameter and buffer of ``module`` as process ``src`` has it (in place)."""
        if self.world <= 1:
            return
        import torch.distributed as dist

        for tensor in module.state_dict().values():
            dist.broadcast(tensor, src=src)

    def first(self, fn: Callable[[], Any], *, share: bool = True, who: bool | None = None) -> Any:
        """``fn()`` run by rank 0 (or by the processes where ``who`` is true) while the
        others wait; every process then returns rank 0's value (``share``: a small plain
        value; else None on the others) or raises the error of the lowest rank that
        failed, with its message. The wait may last ``ZOO_DIST_WAIT`` seconds; it ends at
        once when a process it waits for dies."""
        runs = self.main if who is None else who
        if self.world <= 1:
            return fn()
        value, exc, sent = _outcome(fn) if runs else (None, None, None)
        mine = (sent, value if share and self.main and exc is None else None)
        outcomes: list[Any] = [None] * self.world
        import torch.distributed as dist

        dist.all_gather_object(outcomes, mine, group=self._waits)
        if exc is not None:
            raise exc
        failed = next((o[0] for o in outcomes if o[0] is not None), None)
        if failed is not None:
            _raise(failed)
        return value if runs else outcomes[0][1]

    def agree(self, fn: Callable[[], Any]) -> list[Any]:
        """``fn()`` on every process; their values in rank order, or on every process the
        error of the lowest rank that failed (with its message)."""
        if self.world <= 1:
            return [fn()]
        value, exc, sent = _outcome(fn)
        outcomes = self.gather((sent, value if exc is None else None))
        if exc is not None:
            raise exc
        failed = next((o[0] for o in outcomes if o[0] is not None), None)
        if failed is not None:
            _raise(failed)
        return [o[1] for o in outcomes]


@dataclass
class Runtime:
    device: torch.device
    bf16: bool
    channels_last: bool
    dist: Dist

    def autocast(self) -> Callable[[], AbstractContextManager[Any]]:
        import torch

        if not self.bf16:
            return nullcontext
        device_type = self.device.type

        def ctx() -> AbstractContextManager[Any]:
            return torch.autocast(device_type, dtype=torch.bfloat16)

        return ctx

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        import torch

        x = x.to(self.device, non_blocking=True)
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return x


def _is_conv(model: nn.Module) -> bool:
    from torch import nn

    return any(isinstance(m, nn.Conv2d) for m in model.modules())


def _cpu_bf16_fast() -> bool:
    """bf16 autocast pays off on CPUs with native bf16 math (AVX512-BF16 / AMX)."""
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except Exception:
        return False


def resolve_runtime(
    device: str,
    precision: str,
    channels_last: bool | None,
    model: nn.Module,
    dist: Dist,
    deterministic: bool,
) -> Runtime:
    import torch

    if device == "auto":
        dev = torch.device(f"cuda:{dist.local_rank}" if torch.cuda.is_available() else "cpu")
    else:
        try:
            dev = torch.device(device)
        except RuntimeError:
            raise UsageError(
                f"--device {device!r} is not a torch device (cpu, cuda, cuda:1)"
            ) from None
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise UsageError("--device cuda: no CUDA device is visible; use --device cpu")
        if dev.type == "cuda" and dist.world > 1:  # one GPU per process: LOCAL_RANK's
            dev = torch.device(f"cuda:{dist.local_rank}")
        elif dev.type == "cuda" and dev.index is None:
            dev = torch.device("cuda", torch.cuda.current_device())
    if precision == "bf16":
        bf16 = True
    elif precision == "fp32" or deterministic:
        bf16 = False
    elif dev.type == "cuda":
        bf16 = torch.cuda.is_bf16_supported()
    else:
        bf16 = _cpu_bf16_fast()
    cl = _is_conv(model) if channels_last is None else channels_last
    return Runtime(dev, bf16, cl, dist)
