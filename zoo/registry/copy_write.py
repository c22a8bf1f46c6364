"""One version's copy written into the destination store, in registration's order
(:mod:`zoo.registry.write`): everything read from the source and checked first; then a
run tagged ``pending NAME``, its logged model's files uploaded and re-hashed; then the
version, in one call with its tags and description. :mod:`zoo.registry.copy` plans the
copy and explains it. The source client is only read from."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from zoo.contract.errors import IntegrityError, NotFoundError
from zoo.contract.refs import JOINER
from zoo.registry import store
from zoo.registry.read import WEIGHTS_FILE, sha256_file
from zoo.registry.records import TAG, RegisteredVersion

__all__ = ["copied_from", "copy_one", "create_version", "repoint", "weights_sha"]

_BATCH = 500  # metrics per log_batch call (MLflow allows 1000)


def weights_sha(v: RegisteredVersion) -> str | None:
    return v.tags.get(TAG.WEIGHTS_SHA256) or (v.lineage.get("weights") or {}).get("sha256")


def repoint(value: Any, mapping: Mapping[str, str]) -> Any:
    """``value`` (a record, a tag) with every source ``models:/`` URI of ``mapping`` (whole
    strings, or one of several joined by ',') replaced by the destination's."""
    if isinstance(value, str):
        if value in mapping:
            return mapping[value]
        if JOINER in value:
            parts = value.split(JOINER)
            if any(p in mapping for p in parts):
                return JOINER.join(mapping.get(p, p) for p in parts)
        return value
    if isinstance(value, list):
        return [repoint(item, mapping) for item in value]
    if isinstance(value, dict):
        return {k: repoint(item, mapping) for k, item in value.items()}
    return value


def copied_from(tags: Mapping[str, str]) -> dict[str, Any]:
    try:
        found = json.loads(tags.get(TAG.COPIED_FROM) or "{}")
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}


def _weights_file(v: RegisteredVersion) -> str | None:
    """The file whose SHA-256 the version records (an export's own file)."""
    if v.tags.get(TAG.FORMAT, "pytorch") == "pytorch":
        return WEIGHTS_FILE
    return (v.lineage.get("weights") or {}).get("file")


def _download(artifact_uri: str, dst: Path, tracking_uri: str) -> Path:
    import mlflow

    dst.mkdir(parents=True, exist_ok=True)
    got = mlflow.artifacts.download_artifacts(
        artifact_uri=artifact_uri, dst_path=str(dst), tracking_uri=tracking_uri
    )
    return Path(got)


def _check_sha(v: RegisteredVersion, path: Path, where: str) -> None:
    want = weights_sha(v)
    if not want:
        return
    have = sha256_file(path) if path.is_file() else "missing"
    if have != want:
        raise IntegrityError(
            f"{v.model_uri}: the weights {where} have sha256 {have[:16]}..., the lineage "
            f"recorded {want[:16]}...: nothing was copied for it (run `zoo registry check "
            "--verify` on the source)"
        )


def _source_run(smc: Any, run_id: str | None) -> Any:
    if not run_id:
        return None
    try:
        return smc.get_run(run_id)
    except Exception:
        return None  # the run was deleted: the version's files still copy


def _read_source(smc: Any, v: RegisteredVersion, run: Any, tmp: Path) -> tuple[Any, Path, Path]:
    """The logged model, its files and the run's artifacts, downloaded and checked."""
    src_uri = store.tracking_uri()
    model_id = v.tags.get(TAG.MODEL_ID)
    if not model_id:
        raise NotFoundError(f"{v.model_uri} has no zoo artifacts (no {TAG.MODEL_ID} tag)")
    lm = smc.get_logged_model(model_id)
    files = _download(str(lm.artifact_location), tmp / "model", src_uri)
    inner = _weights_file(v)
    if inner:
        _check_sha(v, files / inner, "in the source store")
    run_files = tmp / "run"
    run_files.mkdir()
    if run is not None:
        with contextlib.suppress(FileNotFoundError):
            smc.download_artifacts(run.info.run_id, "", str(run_files))
    return lm, files, run_files


def _rewrite_lineage(files: Path, name: str, record: Mapping[str, Any], dmc: Any) -> None:
    """lineage.json, the model card and the lineage picture, re-pointed (the weights stay
    byte for byte). The picture is drawn again from the destination's copies of the
    ancestors (copied before this version), so its numbers are the destination's."""
    from zoo.registry.modelcard import model_card
    from zoo.registry.picture import SVG_FILE, lineage_svg
    from zoo.registry.records import from_model_version
    from zoo.registry.write import CARD_FILE, LINEAGE_FILE

    if (files / LINEAGE_FILE).exists():
        text = json.dumps(record, indent=2, sort_keys=True)
        (files / LINEAGE_FILE).write_text(text, "utf-8")
    if (files / CARD_FILE).exists():
        (files / CARD_FILE).write_text(model_card(name, record), "utf-8")
    if (files / SVG_FILE).exists():

        def on_destination(uri: str) -> Any:
            from mlflow.exceptions import MlflowException

            from zoo.contract.errors import NotFoundError

            model, _, number = str(uri).removeprefix("models:/").rpartition("/")
            try:
                return from_model_version(dmc.get_model_version(model, number))
            except MlflowException as exc:  # drawn from what the child recorded
                raise NotFoundError(f"{uri} is not in the destination") from exc

        picture = lineage_svg(record, name=name, get_version=on_destination)
        (files / SVG_FILE).write_bytes(picture)


def _point_mlmodel(path: Path, run_id: str, model_id: str) -> None:
    """MLflow's MLmodel names the run and logged model that hold it: the copy's own (MLflow
    looks the logged model up by that id, e.g. for a model's info)."""
    if not path.is_file():
        return
    from mlflow.models import Model

    model = Model.load(str(path))
    model.run_id, model.model_id = run_id, model_id
    model.save(str(path))


def _remove_stale(dmc: Any, ident: Mapping[str, Any]) -> None:
    """Runs an interrupted copy of the same version left pending: removed, as
    `zoo registry check --clean` removes unfinished registrations."""
    from zoo.registry.maintain import _remove_run

    experiments = [e.experiment_id for e in dmc.search_experiments()]
    if not experiments:
        return
    pending = dmc.search_runs(
        experiments, filter_string=f"tags.`{TAG.RUN_REGISTRATION}` LIKE 'pending %'"
    )
    for run in pending:
        have = copied_from(run.data.tags)
        if (have.get("version"), have.get("sha256")) == (ident["version"], ident["sha256"]):
            _remove_run(dmc, run)


def _new_run(
    dmc: Any, experiment: str, run: Any, v: RegisteredVersion, ident: Mapping[str, Any]
) -> str:
    skip = {TAG.RUN_REGISTRATION, TAG.COPIED_FROM, "mlflow.runName", "mlflow.log-model.history"}
    tags = {k: val for k, val in (run.data.tags if run else {}).items() if k not in skip}
    tags[TAG.RUN_REGISTRATION] = f"pending {v.name}"
    tags[TAG.COPIED_FROM] = json.dumps(dict(ident), sort_keys=True)
    created = dmc.create_run(
        experiment,
        start_time=run.info.start_time if run else None,
        tags=tags,
        run_name=run.info.run_name if run else f"copy of {v.model_uri}",
    )
    return str(created.info.run_id)


def _copy_run_data(
    smc: Any, dmc: Any, run: Any, run_id: str, models: Mapping[str, str], mapping: Any
) -> None:
    """Params, every metric's history (with its dataset and model links), dataset inputs."""
    from mlflow.entities import Metric, Param

    if run is None:
        return
    params = [Param(k, str(repoint(val, mapping))) for k, val in run.data.params.items()]
    for i in range(0, len(params), 100):
        dmc.log_batch(run_id, params=params[i : i + 100])
    metrics = []
    for key in run.data.metrics:
        for m in smc.get_metric_history(run.info.run_id, key):
            linked = m.dataset_name is not None and m.dataset_digest is not None
            metrics.append(
                Metric(
                    m.key,
                    m.value,
                    m.timestamp,
                    m.step,
                    model_id=models.get(m.model_id) if m.model_id else None,
                    dataset_name=m.dataset_name if linked else None,
                    dataset_digest=m.dataset_digest if linked else None,
                )
            )
    for i in range(0, len(metrics), _BATCH):
        dmc.log_batch(run_id, metrics=metrics[i : i + _BATCH])
    datasets = list(getattr(run.inputs, "dataset_inputs", None) or [])
    if datasets:
        dmc.log_inputs(run_id, datasets=datasets)


def _ensure_registered_model(smc: Any, dmc: Any, name: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        dmc.get_registered_model(name)
        return
    except MlflowException:
        pass
    source = smc.get_registered_model(name)
    try:
        dmc.create_registered_model(
            name, tags=dict(source.tags or {}), description=source.description or None
        )
    except MlflowException as exc:
        if getattr(exc, "error_code", "") not in {"RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS"}:
            raise


def _verify_upload(dmc: Any, v: RegisteredVersion, model_id: str, tmp: Path, uri: str) -> None:
    """Every required file there; the weights downloaded back and hashed."""
    from zoo.registry.write import REQUIRED_FILES, missing_files

    fmt = v.tags.get(TAG.FORMAT, "pytorch")
    required = v.lineage.get("required_files") or REQUIRED_FILES.get(fmt, ("MLmodel",))
    missing = missing_files(dmc, model_id, required)
    if missing:
        raise RuntimeError(
            f"the copy of {v.model_uri} is incomplete on {uri} (missing {', '.join(missing)});"
            " its version was not created: run the command again"
        )
    inner = _weights_file(v)
    if inner:
        location = str(dmc.get_logged_model(model_id).artifact_location).rstrip("/")
        back = _download(f"{location}/{inner}", tmp / "check", uri)
        _check_sha(v, back if back.is_file() else back / Path(inner).name, "in the destination")


def copy_one(
    smc: Any,
    dmc: Any,
    v: RegisteredVersion,
    *,
    mapping: Mapping[str, str],
    ident: Mapping[str, Any],
    dst_uri: str,
) -> str:
    """Copy one version whose parents are copied already (``mapping``: source URI ->
    destination URI); returns the destination's ``models:/NAME/M``."""
    from mlflow.entities import LoggedModelOutput

    from zoo.registry.lineage import describe_markdown

    record = repoint(dict(v.lineage), mapping)
    tags = {k: str(repoint(val, mapping)) for k, val in v.tags.items()}
    run = _source_run(smc, v.run_id)
    experiment = smc.get_experiment(run.info.experiment_id).name if run else "zoo"
    with tempfile.TemporaryDirectory(prefix="zoo-copy-") as folder:
        tmp = Path(folder)
        lm, files, run_files = _read_source(smc, v, run, tmp)
        if record != dict(v.lineage):
            _rewrite_lineage(files, v.name, record, dmc)
        # The destination is written from here on.
        exp_id = store.experiment_id(experiment, uri=dst_uri)
        _remove_stale(dmc, ident)
        run_id = _new_run(dmc, exp_id, run, v, ident)
        new = dmc.create_logged_model(
            exp_id,
            name=lm.name,
            source_run_id=run_id,
            tags={k: val for k, val in (lm.tags or {}).items() if not k.startswith("mlflow.")},
            params=dict(lm.params or {}) or None,
            model_type=lm.model_type,
        )
        model_id = str(new.model_id)
        dmc.log_outputs(run_id, [LoggedModelOutput(model_id, step=0)])
        _copy_run_data(smc, dmc, run, run_id, {str(lm.model_id): model_id}, mapping)
        if any(run_files.iterdir()):
            dmc.log_artifacts(run_id, str(run_files))
        _point_mlmodel(files / "MLmodel", run_id, model_id)
        dmc.log_model_artifacts(model_id, str(files))
        _verify_upload(dmc, v, model_id, tmp, dst_uri)
    dmc.finalize_logged_model(model_id, "READY")
    _ensure_registered_model(smc, dmc, v.name)
    tags[TAG.MODEL_ID] = model_id
    tags[TAG.COPIED_FROM] = json.dumps(dict(ident), sort_keys=True)
    if record:
        tags[TAG.LINEAGE] = json.dumps(record, sort_keys=True)
    mv = create_version(
        dmc,
        name=v.name,
        source=f"models:/{model_id}",
        run_id=run_id,
        tags=tags,
        description=describe_markdown(record) if record else repoint(v.description, mapping),
        model_id=model_id,
    )
    dmc.set_tag(run_id, TAG.RUN_REGISTRATION, f"{mv.name}/{mv.version}")
    status = run.info.status if run and run.info.status != "RUNNING" else "FINISHED"
    dmc.set_terminated(run_id, status, end_time=run.info.end_time if run else None)
    return f"models:/{mv.name}/{mv.version}"


def create_version(dmc: Any, **kwargs: Any) -> Any:
    """The single step that makes the copy visible (tests interrupt just before it).

    MLflow's SQL registry looks a ``models:/m-...`` source up through the *global*
    tracking URI (a TODO in its sqlalchemy_store), so the destination is made global for
    this one call, and zoo's store (the source) is put back after it."""
    import mlflow

    before, env = mlflow.get_tracking_uri(), os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(dmc.tracking_uri)
    try:
        return dmc.create_model_version(await_creation_for=0, **kwargs)
    finally:
        mlflow.set_tracking_uri(before)
        if env is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = env
