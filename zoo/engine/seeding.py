"""Seeds and RNG state: each epoch's randomness depends only on (seed, epoch).

A resumed epoch therefore replays exactly what the interrupted one would have done, and
the RNG state saved in a checkpoint restores everything else.
"""

from __future__ import annotations

import json
import random
from typing import Any

__all__ = ["epoch_seed", "rng_state", "seed_everything", "set_rng_state"]


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of one global epoch: data order, augmentation and dropout depend only on
    (seed, epoch), so a resumed epoch replays exactly what the interrupted one would have."""
    return (seed * 1_000_003 + epoch * 7919 + 17) % (2**31 - 1)


def seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """Python's, NumPy's and torch's RNG states as tensors and plain values (no pickles)."""
    import numpy as np
    import torch

    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": json.dumps(random.getstate()),
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached": float(cached),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    import numpy as np
    import torch

    py = json.loads(state["python"])
    random.setstate((py[0], tuple(py[1]), py[2]))
    npst = state["numpy"]
    np.random.set_state(
        (
            npst["kind"],
            npst["keys"].numpy().astype(np.uint32),
            npst["pos"],
            npst["has_gauss"],
            npst["cached"],
        )
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
