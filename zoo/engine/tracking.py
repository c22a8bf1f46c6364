"""MLflow: the listener (``events.py``) that tracks a run and registers its result; the
only engine module that talks to the store (``register.py`` does the registering).

Wired only for runs that register. Rank 0 owns the MLflow run (one per job): it creates
the run at run start (or continues the checkpoint's) and its id reaches every process
through ``state.dist.first``; it logs each epoch (after the checkpoint), and at run end
the final metrics and figures, then registers the result (every process learns the
version), then ends the run FINISHED; a run that stops ends KILLED or FAILED.
"""

from __future__ import annotations

import contextlib
import json
from typing import TYPE_CHECKING, Any

from zoo.disk.paths import atomic_write_text
from zoo.engine import register
from zoo.engine.events import Listener
from zoo.engine.finish import figure_files
from zoo.engine.state import plan_to_dict

if TYPE_CHECKING:  # pragma: no cover
    from pathlib import Path

    from zoo.engine.state import FinetuneResult, RunState

__all__ = ["EXPERIMENT", "Tracking"]

EXPERIMENT = "zoo"


class Tracking(Listener):
    """The MLflow listener of one process: it acts on rank 0 (``active``); on the other
    ranks it takes part in rank 0's steps (their ``state.dist.first``) and nothing else."""

    def __init__(self, state: RunState, *, again: bool = False) -> None:
        self.state = state
        self.active = state.dist.main
        self.again = again  # register a new version even if the store has this recipe's
        self.dataset: tuple[str, str] | None = None  # (name, digest) as logged by log_dataset

    def on_run_start(self, state: RunState) -> None:
        def start() -> str | None:  # rank 0
            self.start()
            return state.run_id

        state.run_id = state.dist.first(start)  # rank 0's run, known to every process

    def on_epoch_end(self, state: RunState, record: dict[str, Any]) -> None:
        state.dist.first(lambda: self.log_epoch(record))  # rank 0; a failure reaches all

    def on_run_end(self, state: RunState, result: FinetuneResult) -> None:
        def conclude() -> dict[str, Any]:  # rank 0
            cm_png, curves_png, matrix_json = figure_files(state)
            files = [(cm_png, "figures"), (curves_png, "figures"), (matrix_json, None)]
            self.log_files(files)
            done = register.register(state, result, experiment=EXPERIMENT, again=self.again)
            self.log_final(result.metrics, None if done.get("already_registered") else done)
            self.end("FINISHED")
            return done

        for key, value in state.dist.first(conclude).items():  # every process: the version
            setattr(result, key, value)

    def on_failure(self, state: RunState, status: str, error: BaseException) -> None:
        if self.active:
            self.end(status)

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
            except Exception:
                state.run_id = None
            else:  # its dataset too (MLflow links it once; a run older than datasets gains it)
                self.log_dataset()
                return
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
        self.log_dataset()
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

    def log_files(self, files: list[tuple[Path, str | None]]) -> None:
        """The run's figures and confusion matrix (before registering: the version holds
        them too)."""
        if not self.state.run_id:
            return
        mc = self._client()
        for path, artifact_path in files:
            mc.log_artifact(self.state.run_id, str(path), artifact_path=artifact_path)

    def log_final(self, metrics: dict[str, float], version: dict[str, Any] | None) -> None:
        """The registered epoch's metrics (``final.val_accuracy`` beside the per-epoch
        series), logged once registration made the version: linked to its logged model
        and to the run's dataset (MLflow 3's logged-model metrics, which
        ``search_logged_models`` filters by dataset). ``version``: None when another host
        registered the recipe (nothing of this run to link)."""
        from zoo.registry.records import TAG

        run_id = self.state.run_id
        if not run_id:
            return
        mc = self._client()
        model_id, name, digest = None, None, None
        if version is not None:
            mv = mc.get_model_version(version["name"], str(version["version"]))
            model_id = (mv.tags or {}).get(TAG.MODEL_ID)
            name, digest = self.dataset or (None, None)
        for key, value in metrics.items():
            mc.log_metric(
                run_id,
                f"final.{key}" if key == "val_accuracy" else key,
                float(value),
                dataset_name=name,
                dataset_digest=digest,
                model_id=model_id,
            )

    def log_dataset(self) -> None:
        """The run's data as an MLflow dataset input (zoo/registry/datasets.py)."""
        from zoo.registry.datasets import dataset_input

        state = self.state
        split = state.split
        shas = [s.sha256 for s in state.data.samples]
        counts = {"train": len(split.train), "validation": len(split.val), "test": len(split.test)}
        found = dataset_input(
            state.data, state.recipe.data, counts, split.digest(shas), state.recipe.seed
        )
        self._client().log_inputs(state.run_id, datasets=[found])
        self.dataset = (found.dataset.name, found.dataset.digest)

    def end(self, status: str) -> None:
        if not self.state.run_id:
            return
        with contextlib.suppress(Exception):  # tracking must not hide why the run stopped
            self._client().set_terminated(self.state.run_id, status=status)
