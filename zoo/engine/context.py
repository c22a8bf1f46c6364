"""Where and how the run computes: device, precision, memory format, processes."""

from __future__ import annotations

import os
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from zoo.errors import UsageError

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch import nn

__all__ = ["Dist", "Runtime", "resolve_runtime"]


@dataclass
class Dist:
    """torch.distributed as torchrun sets it up (world 1: a single process)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls) -> Dist:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls()
        return cls(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))

    def init(self, device_type: str) -> None:
        if self.world <= 1:
            return
        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")

    def barrier(self) -> None:
        if self.world > 1:
            import torch.distributed as dist

            dist.barrier()

    def all_sum(self, values: list[float]) -> list[float]:
        if self.world <= 1:
            return values
        import torch
        import torch.distributed as dist

        t = torch.tensor(values, dtype=torch.float64)
        dist.all_reduce(t)
        return [float(v) for v in t.tolist()]

    def gather(self, obj: Any) -> list[Any]:
        if self.world <= 1:
            return [obj]
        import torch.distributed as dist

        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, obj)
        return out


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
        if dev.type == "cuda" and dist.world > 1:
            dev = torch.device(f"cuda:{dist.local_rank}")
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
