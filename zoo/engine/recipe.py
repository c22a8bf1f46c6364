"""The recipe: every setting of a fine-tuning run, from a YAML/TOML file and the CLI.

Command-line options win over the file; unset values take the strategy's or the engine's
defaults. The effective recipe (after merging) is logged with the run, and its hash names
the run's checkpoint folder, so re-running the same command resumes the same run.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from zoo.contract.errors import NotFoundError, UsageError
from zoo.data.check import DEFAULT_MAX_BAD_FRACTION

__all__ = ["Recipe", "load_recipe_file"]

# The largest --image-size: one float32 image of 3x4096x4096 is 192 MiB, a batch of 32
# six GiB; beyond that a run is killed for memory rather than refused.
MAX_IMAGE_SIZE = 4096

# Settings that change how, not what, is computed: not part of the run's identity.
_NOT_IDENTITY = {"device", "workers", "nproc_per_node", "resume", "restart", "strict"}


@dataclass(frozen=True)
class Recipe:
    ref: str
    data: str
    strategy: str = "linear-probe"
    unfreeze: int | None = None  # stages below the head that train (strategy default)
    epochs: int | None = None  # strategy default
    lr: float | None = None  # strategy default
    batch_size: int = 32  # global: split across processes under --nproc-per-node
    optimizer: str = "adamw"  # "adamw" or "sgd"
    weight_decay: float = 0.05
    momentum: float = 0.9  # sgd only
    warmup_epochs: float = 0.5  # linear warm-up, then cosine decay to 0, per phase
    label_smoothing: float = 0.1
    image_size: int | None = None  # None: the backbone's default input size
    val_split: float = 0.2
    test_split: float = 0.0  # held out from every choice; scored once on the registered epoch
    seed: int = 0
    name: str | None = None  # registered model name (default: data folder + strategy)
    license: str | None = None
    license_override: str | None = None
    device: str = "auto"  # "auto", "cpu", "cuda", "cuda:1", ...
    workers: int | None = None  # decoding processes (default: min(cores, 8))
    max_bad_fraction: float = DEFAULT_MAX_BAD_FRACTION
    precision: str = "auto"  # "auto", "bf16", "fp32"
    channels_last: bool | None = None  # None: on for convolutional models
    deterministic: bool = False  # deterministic algorithms, fp32, one intra-op setting
    random_init: bool = False  # start from random weights (a baseline), not pretrained
    cache_frozen: bool = True  # compute frozen stages' output once when no augmentation
    nproc_per_node: int = 1
    strict: bool = False  # refuse a leak either way across the lineage (zoo/registry/leakage.py)
    strategy_settings: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise UsageError(f"--batch-size must be at least 1, got {self.batch_size}")
        if self.epochs is not None and self.epochs < 1:
            raise UsageError(f"--epochs must be at least 1, got {self.epochs}")
        if self.lr is not None and not (math.isfinite(self.lr) and self.lr > 0):
            raise UsageError(f"--lr must be a positive finite number, got {self.lr}")
        if self.image_size is not None and not 1 <= self.image_size <= MAX_IMAGE_SIZE:
            raise UsageError(
                f"--image-size must be between 1 and {MAX_IMAGE_SIZE} pixels, got "
                f"{self.image_size}: one batch of such images would not fit in memory"
            )
        if self.name is not None and not self.name.strip():
            raise UsageError("--name is empty: give the registered model a name, or leave it out")
        if self.optimizer not in {"adamw", "sgd"}:
            raise UsageError(f"optimizer must be 'adamw' or 'sgd', got {self.optimizer!r}")
        if self.precision not in {"auto", "bf16", "fp32"}:
            raise UsageError(f"precision must be auto, bf16 or fp32, got {self.precision!r}")
        if not 0.0 <= self.val_split < 1.0:
            raise UsageError(
                f"--val-split must be in [0, 1) (0: no validation split, the last epoch is "
                f"registered), got {self.val_split}"
            )
        if not 0.0 <= self.test_split < 1.0 or self.val_split + self.test_split >= 1.0:
            raise UsageError(
                f"--test-split must be in [0, 1) and, with --val-split {self.val_split}, "
                f"leave images to train on; got {self.test_split}"
            )
        if not 0.0 <= self.max_bad_fraction <= 1.0:
            raise UsageError(f"max_bad_fraction must be in [0, 1], got {self.max_bad_fraction}")
        if self.nproc_per_node < 1:
            raise UsageError(f"--nproc-per-node must be at least 1, got {self.nproc_per_node}")
        if self.batch_size % self.nproc_per_node:
            raise UsageError(
                f"--batch-size {self.batch_size} does not split evenly over "
                f"{self.nproc_per_node} processes; pick a multiple of {self.nproc_per_node}"
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Recipe:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise UsageError(
                f"unknown recipe setting(s): {', '.join(unknown)} "
                f"(known: {', '.join(sorted(known))})"
            )
        return cls(**data)

    def with_overrides(self, **overrides: Any) -> Recipe:
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})

    def key(self) -> str:
        """Identity of the run: same key, same checkpoints (so a re-run resumes)."""
        ident = {k: v for k, v in self.to_dict().items() if k not in _NOT_IDENTITY}
        ident["data"] = str(Path(self.data).expanduser().resolve())
        blob = json.dumps(ident, sort_keys=True, default=str).encode("utf-8")
        return hashlib.sha256(blob).hexdigest()[:16]

    def model_name(self) -> str:
        if self.name:
            return self.name
        stem = Path(self.data).expanduser().resolve().name or "data"
        return f"{stem}-{self.strategy}"


def load_recipe_file(path: str | Path) -> dict[str, Any]:
    """A YAML (.yaml/.yml) or TOML (.toml) recipe as a dict of settings.

    A TOML file may put the settings at top level or under a ``[finetune]`` table.
    Keys may use dashes or underscores (``batch-size`` = ``batch_size``).
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise NotFoundError(f"no recipe file at {path}")
    text = path.read_text(encoding="utf-8")
    suffix = path.suffix.lower()
    try:
        if suffix in {".yaml", ".yml"}:
            import yaml

            data = yaml.safe_load(text) or {}
        elif suffix == ".toml":
            try:
                import tomllib
            except ModuleNotFoundError:  # Python 3.10
                import tomli as tomllib  # type: ignore[no-redef]

            data = tomllib.loads(text)
            if isinstance(data.get("finetune"), dict):
                data = data["finetune"]
        else:
            raise UsageError(f"{path}: a recipe is a .yaml, .yml or .toml file")
    except UsageError:
        raise
    except Exception as exc:
        raise UsageError(f"{path} does not parse: {exc}") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path}: a recipe is a mapping of settings, got {type(data).__name__}")
    return {str(k).replace("-", "_"): v for k, v in data.items()}
