"""Registering an exported file (ONNX, ...) of a registered version as a version of
``NAME.FMT``, in :mod:`zoo.registry.write`'s order: pending tag, artifacts uploaded and
checked, then the version."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from zoo.registry.lineage import build_record, resolve_parent
from zoo.registry.read import get_version, sha256_file
from zoo.registry.records import TAG, RegisteredVersion
from zoo.registry.write import (
    CARD_FILE,
    LINEAGE_FILE,
    _batch_example,
    _finish,
    _new_logged_model,
    _one_line_when_full,
    _start_run,
    _write_extras,
)

__all__ = ["register_export"]


def _exporter(fmt: str) -> tuple[Any, dict[str, Any]]:
    """The installed exporter for ``fmt`` and ``{plugin, distribution, version}``."""
    from zoo.contract.errors import NotFoundError
    from zoo.contract.plugins import get_plugin_manager

    pm = get_plugin_manager()
    exporter = pm.exporters().get(fmt)
    if exporter is None:
        raise NotFoundError(f"no exporter for format '{fmt}' is installed; see `zoo plugins`")
    info = pm.owner_info("exporter", fmt)
    return exporter, {
        "plugin": info.name if info else None,
        "distribution": info.distribution if info else None,
        "version": info.version if info else None,
    }


@_one_line_when_full
def register_export(
    source: RegisteredVersion,
    path: Path,
    *,
    fmt: str,
    input_example: Any,
    files: Mapping[str, Path] | None = None,
    metrics: Mapping[str, float] | None = None,
    run_id: str | None = None,
    experiment: str = "zoo",
    evaluation: Mapping[str, Any] | None = None,
) -> RegisteredVersion:
    """Register an exported file of ``source`` as a version of ``NAME.FMT``.

    The export inherits the source's licence and names it in ``zoo.derived_from``;
    ``files`` (parity report, benchmark) travel with it. The format's exporter (a plugin)
    logs the file with its own MLflow flavour when it has ``log_model`` (ONNX does, so
    plain MLflow loads it); otherwise the file is stored as it is. The lineage names the
    exporter's plugin and version, so the version stays readable without it.
    """
    name = f"{source.name}.{fmt}"
    parent_info = resolve_parent(
        source.model_uri, parent_sha256=None, parent_license=None, get_version=get_version
    )
    exporter, plugin = _exporter(fmt)
    mc, run_id, created = _start_run(run_id, f"export {source.model_uri} to {fmt}", experiment)
    mc.set_tag(run_id, TAG.RUN_REGISTRATION, f"pending {name}")
    if created and metrics:
        for key, value in metrics.items():
            mc.log_metric(run_id, key, float(value))
    file_sha = sha256_file(Path(path))
    record = build_record(
        name=name,
        relation="export",
        parents=[parent_info],
        license_id=source.license,
        license_inherited=True,
        license_override=None,
        strategy=None,
        strategy_settings=None,
        strategy_plugin=None,
        dataset=source.lineage.get("dataset"),
        metrics=metrics,
        preprocessing=source.preprocessing,
        class_names=list(source.class_names),
        weights={"file": Path(path).name, "sha256": file_sha, "format": fmt},
        fmt=fmt,
    )
    record["derived_from"] = source.model_uri
    record["exporter"] = {"name": fmt, **plugin}
    if evaluation:
        record["evaluation"] = dict(evaluation)
    with tempfile.TemporaryDirectory(prefix="zoo-export-") as tmp:
        staging = Path(tmp)
        _write_extras(staging, name, record, files)
        model_id = _new_logged_model(mc, run_id, name)
        log_model = getattr(exporter, "log_model", None)
        if log_model is not None:
            example = _batch_example(input_example).numpy() if input_example is not None else None
            logged = log_model(Path(path), input_example=example, run_id=run_id, model_id=model_id)
        else:
            shutil.copyfile(path, staging / Path(path).name)
            logged = (Path(path).name,)
        record["required_files"] = [*logged, LINEAGE_FILE, CARD_FILE]
        (staging / LINEAGE_FILE).write_text(json.dumps(record, indent=2, sort_keys=True), "utf-8")
        mc.log_model_artifacts(model_id, str(staging))
    return _finish(
        mc,
        name=name,
        run_id=run_id,
        created_run=created,
        model_id=model_id,
        fmt=fmt,
        record=record,
        weights_sha=file_sha,
    )
