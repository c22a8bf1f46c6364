"""A separate process that registers one version, for the concurrency and kill tests.

    python tests/registry_worker.py MODE NAME [SENTINEL]

MODE ``register``: register and print the version. ``pause-upload``: upload only the first
file of the model's artifacts, write SENTINEL and wait (the test SIGKILLs us mid-upload).
``pause-before-version``: upload everything, write SENTINEL and wait just before the
version is created. The model is a tiny real torch module (no timm import: 8 of these run
at once on 2 cores).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any


def _pause(sentinel: str) -> None:
    Path(sentinel).write_text("paused", encoding="utf-8")
    time.sleep(600)


def main() -> None:
    mode, name = sys.argv[1], sys.argv[2]
    sentinel = sys.argv[3] if len(sys.argv) > 3 else ""
    import torch
    from torch import nn

    from zoo import registry

    if mode == "pause-upload":
        from mlflow import MlflowClient

        def partial_upload(
            self: Any, model_id: str, local_dir: str, artifact_path: Any = None
        ) -> None:
            files = sorted(p for p in Path(local_dir).rglob("*") if p.is_file())
            first = files[0]
            inner = first.parent.relative_to(local_dir).as_posix()
            self.log_model_artifact(model_id, str(first), None if inner == "." else inner)
            _pause(sentinel)

        MlflowClient.log_model_artifacts = partial_upload  # type: ignore[method-assign]
    elif mode == "pause-before-version":
        from zoo.registry import write

        def paused_create(mc: Any, **kwargs: Any) -> Any:
            _pause(sentinel)

        write._create_version = paused_create  # type: ignore[assignment]
    elif mode != "register":
        raise SystemExit(f"unknown mode {mode}")

    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2)
    )
    v = registry.register_derivative(
        model,
        name=name,
        parent="local:tiny-base",
        parent_sha256="ab" * 32,
        parent_license="mit",
        strategy="linear-probe",
        strategy_settings={"epochs": 1},
        strategy_plugin="zoo-test==0",
        dataset={
            "digest": "sha256:" + "cd" * 32,
            "classes": ["a", "b"],
            "counts": {"a": 1, "b": 1},
        },
        metrics={"val_accuracy": 0.5},
        input_example=torch.zeros(2, 3, 16, 16),
        preprocessing={"input_size": [3, 16, 16]},
        class_names=["a", "b"],
    )
    print(f"VERSION {v.version}", flush=True)


if __name__ == "__main__":
    main()
