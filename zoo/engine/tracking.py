"""MLflow tracking of a run: the only engine module that imports the store.

Rank 0 owns the run (one MLflow run per job); :class:`NoTracking` stands in on the other
ranks and for ``register=False`` runs, so the loop never asks which it has.
"""

from __future__ import annotations

import contextlib
import json
from typing import TYPE_CHECKING, Any

from zoo.disk.paths import atomic_write_text
from zoo.engine.model import plan_to_dict

if TYPE_CHECKING:  # pragma: no cover
    from pathlib import Path

    from zoo.engine.state import RunState

__all__ = ["EXPERIMENT", "NoTracking", "Tracking", "registered_by_recipe", "tag_recipe", "tracker"]

EXPERIMENT = "zoo"


class NoTracking:
    def start(self) -> None: ...

    def log_epoch(self, record: dict[str, Any]) -> None: ...

    def log_final(
        self, metrics: dict[str, float], files: list[tuple[Path, str | None]]
    ) -> None: ...

    def end(self, status: str) -> None: ...


class Tracking(NoTracking):
    def __init__(self, state: RunState) -> None:
        self.state = state

    def _client(self) -> Any:
        from zoo.registry import store

        return store.client()

    def start(self) -> None:
        """Continue the checkpoint's MLflow run, or create one with the recipe as params."""
        from zoo.registry import store

        state = self.state
        mc = self._client()
        if state.run_id:
            try:
                mc.get_run(state.run_id)
                return
            except Exception:
                state.run_id = None
        run = mc.create_run(
            store.experiment_id(EXPERIMENT),
            run_name=f"finetune {state.recipe.model_name()}",
            tags={"zoo.kind": "finetune", "zoo.strategy": state.recipe.strategy},
        )
        state.run_id = run.info.run_id
        params = {
            k: (json.dumps(v) if isinstance(v, (dict, list)) else str(v))[:500]
            for k, v in state.recipe.to_dict().items()
        }
        params["dataset_digest"] = state.data.digest
        params["num_train"] = str(len(state.split.train))
        params["num_val"] = str(len(state.split.val))
        params["num_test"] = str(len(state.split.test))
        params["skipped_files"] = str(len(state.data.bad))
        params["duplicates_dropped"] = str(len(state.data.duplicates))
        params["world_size"] = str(state.dist.world)  # processes of the job (torchrun)
        if state.plan.settings.get("decision"):  # what a choosing strategy chose, and why
            params["strategy_decision"] = str(state.plan.settings["decision"])
            params["strategy_reason"] = str(state.plan.settings.get("reason", ""))[:500]
            for key, value in (state.plan.settings.get("evidence") or {}).items():
                params[f"evidence.{key}"] = str(value)
        for key, value in params.items():
            mc.log_param(state.run_id, key, value)
        import yaml

        effective = state.recipe.to_dict()
        effective["plan"] = plan_to_dict(state.plan, state.names)
        recipe_file = state.dir / "recipe.yaml"
        atomic_write_text(recipe_file, yaml.safe_dump(effective, sort_keys=False))
        mc.log_artifact(state.run_id, str(recipe_file))
        if state.data.bad:
            listing = state.dir / "skipped_files.txt"
            atomic_write_text(listing, "".join(f"{b.path}\t{b.reason}\n" for b in state.data.bad))
            mc.log_artifact(state.run_id, str(listing))

    def log_epoch(self, record: dict[str, Any]) -> None:
        if not self.state.run_id:
            return
        mc = self._client()
        step = int(record["epoch"])
        for key, value in record.items():
            if key not in {"epoch", "phase", "phase_epoch"} and isinstance(value, (int, float)):
                mc.log_metric(self.state.run_id, key, float(value), step=step)

    def log_final(self, metrics: dict[str, float], files: list[tuple[Path, str | None]]) -> None:
        """The registered epoch's metrics (``final.val_accuracy`` beside the per-epoch
        series) and the run's figures and confusion matrix."""
        run_id = self.state.run_id
        if not run_id:
            return
        mc = self._client()
        for key, value in metrics.items():
            mc.log_metric(run_id, f"final.{key}" if key == "val_accuracy" else key, value)
        for path, artifact_path in files:
            mc.log_artifact(run_id, str(path), artifact_path=artifact_path)

    def end(self, status: str) -> None:
        if not self.state.run_id:
            return
        with contextlib.suppress(Exception):  # tracking must not hide why the run stopped
            self._client().set_terminated(self.state.run_id, status=status)


def tracker(state: RunState) -> NoTracking:
    return Tracking(state) if state.register and state.dist.main else NoTracking()


def registered_by_recipe(state: RunState) -> dict[str, Any] | None:
    """The version this recipe already registered on this data, as the store (not this
    home) knows it: two hosts sharing one team store may run the same recipe."""
    from zoo.registry.records import TAG
    from zoo.registry.store import client

    key, digest = state.recipe.key(), state.data.digest
    found = client().search_model_versions(
        f"tags.`{TAG.RECIPE_KEY}` = '{key}' and tags.`{TAG.DATASET_DIGEST}` = '{digest}'"
    )
    if not found:
        return None
    first = min(found, key=lambda v: int(v.version))
    return {
        "name": first.name,
        "version": int(first.version),
        "model_uri": f"models:/{first.name}/{first.version}",
        "run_id": first.run_id,
    }


def tag_recipe(state: RunState, version: Any) -> None:
    """Tag the registered version with its recipe's key (what registered_by_recipe finds)."""
    from zoo.registry.records import TAG
    from zoo.registry.store import client

    client().set_model_version_tag(
        version.name, str(version.version), TAG.RECIPE_KEY, state.recipe.key()
    )
