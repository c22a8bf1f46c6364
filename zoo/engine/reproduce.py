"""`zoo registry reproduce`: a registered fine-tune trained again from its lineage, and
compared with what was registered; nothing is registered.

1. The recipe is rebuilt from the lineage (``reproduce_plan.py``) and every cause of
   other bytes is said, one line each (other library versions, another device kind, a
   version not trained in deterministic mode).
2. The data is checked (decoded as the run would) and refused in one line, before
   anything trains, when its digest is not the recorded one.
3. The recipe trains with ``finetune(register=False, folder=...)`` in a folder of its
   own, ``$ZOO_HOME/reproduce/run-*`` (removed afterwards): the registered run's
   checkpoint folder (``$ZOO_HOME/runs/KEY``) is never found, resumed or overwritten,
   so the reproduction always trains from scratch. The content-keyed caches (decoded
   images, frozen features) are shared: they hold what the same inputs compute.
4. The trained model is serialised as registration serialises it (safetensors, on the
   CPU) and its SHA-256 compared with the registered one; each recorded metric is set
   beside the reproduced one.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zoo.contract.errors import DataError, Interrupted
from zoo.engine.events import Callback
from zoo.engine.reproduce_plan import Reproduction, plan_reproduction
from zoo.progress import say

if TYPE_CHECKING:  # pragma: no cover
    from zoo.engine.state import FinetuneResult, RunState

__all__ = ["Reproduction", "check_data", "plan_reproduction", "reproduce", "weights_sha256"]

FOLDER = "reproduce"  # under $ZOO_HOME: the temporary run folders


def reproduce(
    model_uri: str,
    data: str | None = None,
    *,
    device: str | None = None,
    tell: Callable[[str], None] = say,
) -> dict[str, Any]:
    """Train ``model_uri``'s recorded recipe again on ``data`` (default: the recorded
    path) and compare; returns the report (docs/json.md, ``registry_reproduce``)."""
    from zoo.disk.paths import require_writable, staging_dir, subdir
    from zoo.engine.job import finetune

    start = time.monotonic()
    plan = plan_reproduction(model_uri, data, device=device)
    for line in plan.notes:
        tell(line)
    require_writable("zoo registry reproduce (a temporary run folder, the caches)")
    digest = check_data(plan)
    watch = _Watch(plan, tell)
    with staging_dir(subdir(FOLDER), "run-") as folder:
        try:
            tell(f"reproducing {plan.model_uri} in {folder} (from scratch; nothing is registered)")
            result = finetune(plan.recipe, register=False, callbacks=[watch], folder=folder)
            sha = watch.sha256
        except Interrupted:  # the loop's line says "re-run to continue": not here
            raise Interrupted(
                f"the reproduction of {plan.model_uri} was interrupted; its folder is removed "
                "and nothing was registered: run the command again (it starts from scratch)"
            ) from None
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    return _report(plan, result, digest, sha, watch.notes, time.monotonic() - start)


def check_data(plan: Reproduction) -> str:
    """The data's digest, decoded as the run will decode it; a DataError (one line,
    nothing trained) when it is not the recorded one."""
    from zoo.data import Preprocessing, load_dataset
    from zoo.progress import make_progress

    pre = Preprocessing.from_dict(dict(plan.preprocessing))
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    found = load_dataset(
        plan.data,
        resize=pre.resize,
        interpolation=pre.interpolation,
        workers=max(1, min(8, cores or 1)),
        max_bad_fraction=plan.recipe.max_bad_fraction,
        progress=make_progress(),
    )
    if found.digest == plan.digest:
        return found.digest
    then = plan.dataset
    counts = then.get("num_images")
    was = f"{counts} images in {len(then.get('classes') or ())} classes" if counts else "other"
    raise DataError(
        f"{plan.data} is not the data {plan.model_uri} was trained on: digest "
        f"{found.digest[:23]}… ({len(found.samples)} images in {len(found.classes)} classes), "
        f"recorded {plan.digest[:23]}… ({was}); pass the same files. Nothing was trained"
    )


def weights_sha256(model: Any, folder: Path) -> str:
    """SHA-256 of ``model``'s weights serialised as registration serialises them
    (zoo/registry/write.py: safetensors ``save_model`` of the CPU, contiguous module)."""
    import torch
    from safetensors.torch import save_model

    from zoo.registry.read import sha256_file

    model.to("cpu").to(memory_format=torch.contiguous_format)
    model.eval()
    path = folder / "reproduced.safetensors"
    save_model(model, str(path))
    return sha256_file(path)


class _Watch(Callback):
    """At run start: the parents' weights against the pinned ones; at run end: the
    registered model's SHA-256 (in the run's folder, before it is removed)."""

    def __init__(self, plan: Reproduction, tell: Callable[[str], None]) -> None:
        self.plan, self.tell = plan, tell
        self.sha256: str | None = None
        self.notes: list[str] = []

    def on_run_start(self, state: RunState) -> None:
        from zoo.engine.model import parent_pins
        from zoo.registry.read import get_version

        pins = parent_pins(state)
        shas = [p.sha256 for p in pins]
        if state.parent is not None:  # a registered parent: its weights' hash is the store's
            shas = [get_version(state.parent.reference).tags.get("zoo.weights_sha256")]
        for pin, sha, then in zip(pins, shas, self.plan.parents, strict=False):
            if sha and then.get("sha256") and sha != then["sha256"]:
                line = (
                    f"parent {pin.reference} now has weights SHA-256 {sha[:16]}…, "
                    f"{self.plan.model_uri} was trained from {str(then['sha256'])[:16]}…: "
                    "a cause for other bytes"
                )
                self.notes.append(line)
                self.tell(line)

    def on_run_end(self, state: RunState, result: FinetuneResult) -> None:
        if state.registered is not None:
            self.sha256 = weights_sha256(state.registered, state.dir)


def _report(
    plan: Reproduction,
    result: FinetuneResult,
    digest: str,
    sha: str | None,
    notes: list[str],
    seconds: float,
) -> dict[str, Any]:
    identical = bool(sha and plan.weights_sha256 and sha == plan.weights_sha256)
    return {
        "model_uri": plan.model_uri,
        "data": plan.data,
        "dataset_digest": digest,
        "deterministic": plan.recipe.deterministic,
        "identical": identical,
        "weights_sha256": {"registered": plan.weights_sha256, "reproduced": sha},
        "metrics": compare_metrics(plan.metrics, result.metrics),
        "notes": [*plan.notes, *notes],
        "recipe": plan.recipe.to_dict(),
        "seconds": round(seconds, 2),
    }


def compare_metrics(
    registered: Mapping[str, float], reproduced: Mapping[str, float]
) -> list[dict[str, Any]]:
    """Each registered metric beside the reproduced one (timings left out: the clock
    decides them), sorted by name."""
    rows = []
    for name in sorted(registered):
        if name.endswith("_seconds"):
            continue
        now = reproduced.get(name)
        rows.append(
            {
                "name": name,
                "registered": registered[name],
                "reproduced": now,
                "difference": None if now is None else now - registered[name],
            }
        )
    return rows
