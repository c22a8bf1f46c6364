"""Registering: a trained module becomes a model version (an export of one:
:mod:`zoo.registry.write_export`, in the same order).

Write order, so that a process killed at any point leaves no version pointing at missing
artifacts:

1. the run is tagged ``zoo.registration = pending NAME``;
2. every artifact is uploaded under a logged model (torch.export program, safetensors
   weights, lineage.json, model card) and checked to be there;
3. only then is the version created, in one call carrying all its tags and description;
4. the run is tagged with the version it produced.

A kill before step 3 leaves an orphan run (``zoo registry check`` lists it, ``--clean``
removes it); re-running simply registers again.
"""

from __future__ import annotations

import functools
import json
import shutil
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from zoo.contract.errors import IntegrityError, UsageError
from zoo.licenses.compat import decide_licenses
from zoo.registry.describe import describe_markdown, list_in_parents
from zoo.registry.lineage import Pin, build_record, resolve_parents, strategy_plugin_of
from zoo.registry.modelcard import model_card
from zoo.registry.picture import SVG_FILE, lineage_svg
from zoo.registry.read import WEIGHTS_FILE, get_version, sha256_file
from zoo.registry.records import TAG, RegisteredVersion, from_model_version
from zoo.registry.store import client, experiment_id

__all__ = ["REQUIRED_FILES", "missing_files", "register_derivative"]

LINEAGE_FILE = "lineage.json"
CARD_FILE = "README.md"
# Files every zoo version's artifacts hold, by format (checked before and after). An
# export records its own list in its lineage (``required_files``): the exporter knows it.
REQUIRED_FILES: dict[str, tuple[str, ...]] = {
    "pytorch": ("MLmodel", "data/model.pt2", WEIGHTS_FILE, LINEAGE_FILE, CARD_FILE),
}


def missing_files(mc: Any, model_id: str, required: Iterable[str]) -> list[str]:
    """Which of ``required`` (paths inside the logged model) are absent or empty."""
    have: dict[str, int | None] = {}

    def walk(path: str | None) -> None:
        for item in mc.list_logged_model_artifacts(model_id, path):
            if item.is_dir:
                walk(item.path)
            else:
                have[item.path] = item.file_size

    try:
        walk(None)
    except Exception:
        return list(required)
    return [p for p in required if not have.get(p)]


def _check_name(name: str) -> None:
    from zoo.contract.refs import parse_ref

    ref = parse_ref(name)
    if ref.scheme != "bare":
        raise UsageError(
            f"'{name}' is not a model name: a registered name holds letters, digits, "
            "'_', '-', '.' and spaces (no ':' or '/')"
        )


def _check_finite(model: Any, name: str) -> None:
    """NaN or infinite weights are refused before anything reaches MLflow."""
    from zoo.weights.checkpoints import nonfinite_tensors

    bad = nonfinite_tensors(model.state_dict())
    if bad:
        raise IntegrityError(
            f"the model to register as '{name}' holds NaN or infinite values in {len(bad)} "
            f"tensors (e.g. {bad[0]}): nothing was registered. Train again with a lower "
            "learning rate"
        )


def _batch_example(input_example: Any) -> Any:
    """A batch of at least 2: torch.export keeps a batch dimension of 1 static."""
    import torch

    x = input_example if isinstance(input_example, torch.Tensor) else torch.as_tensor(input_example)
    x = x.detach().to("cpu", torch.float32)
    if x.dim() == 3:
        x = x.unsqueeze(0)
    if x.shape[0] < 2:
        x = torch.cat([x, x], dim=0)
    return x[:2].contiguous()


def _pip_requirements() -> list[str]:
    """Pinned explicitly: MLflow's inference of requirements loads the model again (slow)."""
    from zoo.registry.lineage import library_versions

    v = library_versions()
    reqs = [f"{d}=={v[d]}" for d in ("torch", "torchvision", "timm", "safetensors") if v.get(d)]
    return [*reqs, f"mlflow=={v['mlflow']}"] if v.get("mlflow") else reqs


def _start_run(run_id: str | None, run_name: str, experiment: str) -> tuple[Any, str, bool]:
    mc = client()
    if run_id is not None:
        mc.get_run(run_id)  # raises if unknown
        return mc, run_id, False
    run = mc.create_run(experiment_id(experiment), run_name=run_name)
    return mc, run.info.run_id, True


def _new_logged_model(mc: Any, run_id: str, name: str) -> str:
    """A PENDING logged model in the run's experiment; READY once every file is uploaded."""
    run = mc.get_run(run_id)
    lm = mc.create_logged_model(
        run.info.experiment_id, name="model", source_run_id=run_id, tags={"zoo.for": name}
    )
    return str(lm.model_id)


def _ensure_registered_model(mc: Any, name: str, description: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        mc.get_registered_model(name)
        return
    except MlflowException:
        pass
    try:
        mc.create_registered_model(name, tags={"zoo.kind": "zoo-model"}, description=description)
    except MlflowException as exc:
        if getattr(exc, "error_code", "") not in {"RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS"}:
            raise


def _check_uploaded(mc: Any, model_id: str, fmt: str, required: Sequence[str] | None) -> None:
    missing = missing_files(mc, model_id, required or REQUIRED_FILES.get(fmt, ("MLmodel",)))
    if missing:
        raise RuntimeError(
            f"artifact upload of logged model {model_id} is incomplete (missing "
            f"{', '.join(missing)}); nothing was registered, run the command again"
        )


def _version_tags(
    record: Mapping[str, Any], *, weights_sha: str | None, model_id: str, fmt: str
) -> dict[str, str]:
    from zoo.contract.refs import JOINER
    from zoo.contract.version import VERSION

    parents = record.get("parents") or [record["parent"]]
    tags = {
        TAG.LINEAGE: json.dumps(record, sort_keys=True),
        TAG.PARENT: JOINER.join(p["reference"] for p in parents),
        TAG.BASE: record["base"]["reference"],
        TAG.RELATION: record["relation"],
        TAG.LICENSE: record["license"]["id"],
        TAG.FORMAT: fmt,
        TAG.MODEL_ID: model_id,
        TAG.ZOO_VERSION: VERSION,
    }
    optional = {
        TAG.PARENT_SHA256: JOINER.join(p.get("sha256") or "unknown" for p in parents)
        if any(p.get("sha256") for p in parents)
        else None,
        TAG.STRATEGY: (record.get("strategy") or {}).get("name"),
        TAG.DATASET_DIGEST: (record.get("dataset") or {}).get("digest"),
        TAG.LICENSE_OVERRIDE: record["license"].get("override"),
        TAG.WEIGHTS_SHA256: weights_sha,
        TAG.NUM_CLASSES: record.get("num_classes"),
        TAG.DERIVED_FROM: record.get("derived_from"),
        TAG.EVAL_PRECISION: (record.get("evaluation") or {}).get("precision"),
    }
    plugin = (record.get("strategy") or {}).get("plugin") or {}
    if plugin.get("distribution"):
        optional[TAG.STRATEGY_PLUGIN] = f"{plugin['distribution']}=={plugin.get('version')}"
    exporter = record.get("exporter") or {}
    if exporter.get("distribution"):
        optional[TAG.EXPORTER_PLUGIN] = f"{exporter['distribution']}=={exporter.get('version')}"
    tags.update({k: str(v) for k, v in optional.items() if v not in (None, "")})
    return tags


def _finish(
    mc: Any,
    *,
    name: str,
    run_id: str,
    created_run: bool,
    model_id: str,
    fmt: str,
    record: dict[str, Any],
    weights_sha: str | None,
) -> RegisteredVersion:
    _check_uploaded(mc, model_id, fmt, record.get("required_files"))
    mc.finalize_logged_model(model_id, "READY")
    _ensure_registered_model(
        mc, name, f"Registered by zoo; base model `{record['base']['reference']}`."
    )
    mv = _create_version(
        mc,
        name=name,
        source=f"models:/{model_id}",
        run_id=run_id,
        tags=_version_tags(record, weights_sha=weights_sha, model_id=model_id, fmt=fmt),
        description=describe_markdown(record),
        model_id=model_id,
    )
    mc.set_tag(run_id, TAG.RUN_REGISTRATION, f"{mv.name}/{mv.version}")
    if created_run:
        mc.set_terminated(run_id, "FINISHED")
    list_in_parents(mc, record, f"models:/{mv.name}/{mv.version}")  # never undoes it
    return from_model_version(mc.get_model_version(mv.name, mv.version))


def _create_version(mc: Any, **kwargs: Any) -> Any:
    """The single step that makes a version visible (kept separate: tests kill before it)."""
    return mc.create_model_version(await_creation_for=0, **kwargs)


def _one_line_when_full(func: Callable[..., RegisteredVersion]) -> Callable[..., RegisteredVersion]:
    """A full disk during a registration is one line (the orphan run is listed by
    `zoo registry check` and removed by --clean, as for a killed registration)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> RegisteredVersion:
        from zoo.disk.paths import disk_full

        with disk_full(f"the registration of {kwargs.get('name') or 'the model'}"):
            return func(*args, **kwargs)

    return wrapper


@_one_line_when_full
def register_derivative(
    model: Any,
    *,
    name: str,
    parent: str | None = None,
    parent_sha256: str | None = None,
    parent_license: str | None = None,
    parents: Sequence[Pin] = (),
    architecture: Mapping[str, Any] | None = None,
    license: str | None = None,
    license_override: str | None = None,
    strategy: str,
    strategy_settings: Mapping[str, Any] | None,
    strategy_plugin: str | Mapping[str, Any] | None = None,
    dataset: Mapping[str, Any] | None,
    metrics: Mapping[str, float] | None,
    input_example: Any,
    preprocessing: Mapping[str, Any] | None,
    class_names: list[str] | tuple[str, ...] | None,
    artifacts: Mapping[str, Path | str] | None = None,
    run_id: str | None = None,
    experiment: str = "zoo",
    relation: str = "finetune",
    evaluation: Mapping[str, Any] | None = None,
) -> RegisteredVersion:
    """Register ``model`` (an ``nn.Module``) as the next version of ``name``.

    The licence is the parent's unless ``license`` is declared; a declared licence the
    parent's does not allow raises :class:`zoo.LicenseError` unless ``license_override``
    gives a reason, which is recorded on the version. ``artifacts`` are extra files
    (name inside the version -> local path). ``run_id``: log into that run (the training
    run) instead of a new one. ``parents`` in place of ``parent``: a version with several
    parents (a multi-backbone probe), whose licence every parent's chain must allow;
    ``architecture`` is the record a reload rebuilds it from (read.py dispatches on its
    ``kind``). ``evaluation``: what the metrics were computed in (``precision``: tag
    ``zoo.eval_precision``), recorded as the lineage's ``evaluation``.
    """
    import mlflow
    import torch

    _check_name(name)
    _check_finite(model, name)
    pins = list(parents) or ([Pin(parent, parent_sha256, parent_license)] if parent else [])
    if not pins:
        raise UsageError("register_derivative needs a parent (or parents)")
    infos = resolve_parents(pins, get_version=get_version)
    license_id, inherited = decide_licenses(
        [(p.license, p.licenses) for p in infos], license, license_override
    )
    example = _batch_example(input_example)
    mc, run_id, created = _start_run(run_id, f"register {name}", experiment)
    mc.set_tag(run_id, TAG.RUN_REGISTRATION, f"pending {name}")
    if created and metrics:
        for key, value in metrics.items():
            mc.log_metric(run_id, key, float(value))
    was_training = model.training
    model.eval()
    try:
        with tempfile.TemporaryDirectory(prefix="zoo-register-") as tmp:
            staging = Path(tmp)
            weights = staging / WEIGHTS_FILE
            weights.parent.mkdir(parents=True)
            from safetensors.torch import save_model

            save_model(model, str(weights))
            weights_sha = sha256_file(weights)
            record = build_record(
                name=name,
                relation=relation,
                parents=infos,
                architecture=architecture,
                license_id=license_id,
                license_inherited=inherited,
                license_override=license_override,
                strategy=strategy,
                strategy_settings=strategy_settings,
                strategy_plugin=strategy_plugin_of(strategy, strategy_plugin),
                dataset=dataset,
                metrics=metrics,
                preprocessing=preprocessing,
                class_names=class_names,
                weights={"file": WEIGHTS_FILE, "sha256": weights_sha, "format": "safetensors"},
                fmt="pytorch",
            )
            if evaluation:
                record["evaluation"] = dict(evaluation)
            _write_extras(staging, name, record, artifacts)
            model_id = _new_logged_model(mc, run_id, name)
            with torch.no_grad():
                mlflow.pytorch.log_model(
                    model,
                    name="model",
                    input_example=example.numpy(),
                    serialization_format="pt2",
                    pip_requirements=_pip_requirements(),
                    # MLflow would reload the saved program and predict the example only
                    # to log a warning when that fails (~3 s for Lite0); the serving tests
                    # run the real `mlflow models serve` on zoo's versions instead
                    validate_serving_input=False,
                    run_id=run_id,
                    model_id=model_id,
                )
            mc.log_model_artifacts(model_id, str(staging))
    finally:
        model.train(was_training)
    return _finish(
        mc,
        name=name,
        run_id=run_id,
        created_run=created,
        model_id=model_id,
        fmt="pytorch",
        record=record,
        weights_sha=weights_sha,
    )


def _write_extras(
    staging: Path,
    name: str,
    record: Mapping[str, Any],
    artifacts: Mapping[str, Path | str] | None,
) -> None:

    (staging / LINEAGE_FILE).write_text(json.dumps(record, indent=2, sort_keys=True), "utf-8")
    (staging / CARD_FILE).write_text(model_card(name, record), "utf-8")
    (staging / SVG_FILE).write_bytes(lineage_svg(record, name=name, get_version=get_version))
    for inner, src in (artifacts or {}).items():
        dst = staging / inner
        if (
            dst.resolve().parent != staging.resolve()
            and staging.resolve() not in dst.resolve().parents
        ):
            raise UsageError(f"artifact name '{inner}' leaves the version's folder")
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)
