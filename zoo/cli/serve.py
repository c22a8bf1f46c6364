"""`zoo serve` (a registered ONNX export over HTTP, with MLflow's model server) and `zoo ui`
(the MLflow UI on zoo's store): MLflow servers zoo runs for a user until Ctrl-C, quietly
(zoo/registry/supervise.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from zoo.cli.output import note, warn
from zoo.cli.registry import tracking_uri_option

LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def resolve_export(ref: str) -> tuple[Any, str | None]:
    """(the registered ONNX export to serve, the version it was made from when REF named
    that version rather than the export). A bare NAME or models:/NAME/N of a PyTorch
    version serves its newest ONNX export; NAME.onnx (or models:/NAME.onnx/N, @ALIAS)
    names the export itself."""
    from zoo import registry
    from zoo.contract.errors import NotFoundError, UsageError
    from zoo.contract.refs import parse_ref
    from zoo.deploy.exported import latest_export_of
    from zoo.deploy.exporters import install_hint, runtimes

    try:
        version = registry.get_version(ref)
    except (NotFoundError, UsageError) as exc:
        if Path(ref).expanduser().exists():
            raise UsageError(
                f"{ref} is a file or folder: zoo serve serves a registered export "
                "(NAME, NAME.onnx or models:/NAME.onnx/N); run a file with `zoo predict`"
            ) from None
        if not isinstance(exc, NotFoundError):
            raise
        name = parse_ref(ref).name
        base = name.removesuffix(".onnx")
        if base != name and registry.has_model(base):
            raise NotFoundError(
                f"{base} has no ONNX export registered as {name}: run `zoo export {base}` first"
            ) from None
        raise
    source = None
    if version.relation != "export":
        export = latest_export_of(version.model_uri, "onnx")
        if export is None:
            raise NotFoundError(
                f"{version.model_uri} has no ONNX export to serve: run `zoo export {ref}` first"
            )
        source = version.model_uri
        version = registry.get_version(export)
    fmt = version.tags.get("zoo.format", "onnx")
    if fmt != "onnx":
        raise UsageError(
            f"{version.model_uri} is a '{fmt}' export; zoo serve serves ONNX exports (their "
            "MLflow python_function flavour takes images): serve an export made with "
            "`zoo export --format onnx`"
        )
    if fmt not in runtimes():  # its python_function flavour is the exporter plugin's code
        raise NotFoundError(
            f"{version.model_uri} is an '{fmt}' export and no installed exporter runs "
            f"'{fmt}': {install_hint(fmt)}"
        )
    return version, source


@click.command("serve")
@tracking_uri_option
@click.argument("model")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind.")
@click.option("--port", default=5001, show_default=True, type=click.IntRange(1, 65535))
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=click.IntRange(1, 64),
    help="Server processes, each with its own copy of the model.",
)
@click.option(
    "--provider",
    type=click.Choice(["auto", "cpu", "cuda", "tensorrt"]),
    default=None,
    help="ONNX Runtime provider (sets ZOO_PROVIDER for the server; default auto: "
    "TensorRT, then CUDA, then CPU).",
)
@click.option(
    "--root",
    envvar="ZOO_SERVE_ROOT",
    type=click.Path(exists=True, file_okay=False, resolve_path=True, path_type=Path),
    default=None,
    help="The folder that requests' 'path' rows may name (env ZOO_SERVE_ROOT; default: "
    "none, every 'path' row is refused).",
)
@click.option(
    "--max-bytes",
    envvar="ZOO_SERVE_MAX_BYTES",
    type=click.IntRange(min=1),
    default=None,
    help="The largest image a request may send or name, in bytes (env "
    "ZOO_SERVE_MAX_BYTES; default 33554432, 32 MiB).",
)
def serve_cmd(
    model: str,
    host: str,
    port: int,
    workers: int,
    provider: str | None,
    root: Path | None,
    max_bytes: int | None,
) -> None:
    """Serve a registered ONNX export over HTTP until Ctrl-C: images in, classes out.

    MODEL is NAME (its newest ONNX export), NAME.onnx, or models:/NAME.onnx/N. Runs
    MLflow's model server (`mlflow models serve --env-manager local`) on the store zoo
    uses, with its log in a file: the terminal shows where it answers. Ctrl-C or SIGTERM
    stops it with all its workers. This is not `zoo registry serve`, the team's
    tracking server.

    \b
      zoo serve pets.onnx
      zoo serve models:/pets.onnx/2 --port 8080 --root /srv/inbox
      curl -s http://127.0.0.1:5001/invocations -H 'Content-Type: application/json' \\
        -d '{"dataframe_records": [{"path": "cat.png"}]}'

    Requests and answers: docs/export.md ("Serving with MLflow").
    """
    from zoo.registry import store
    from zoo.registry.server import model_server_command, quiet_env
    from zoo.registry.supervise import Server, check_port, log_path, run_quietly, url_of

    if host not in LOOPBACK:
        warn(
            f"serving on {host}: the model server has no authentication; anyone who "
            "reaches it can use it"
        )
    check_port(host, port)
    endpoint = url_of(host, port, "/invocations")
    note(f"starting MLflow's model server for {model} on {url_of(host, port)} ...")
    uri = store.configure()  # mlflow is imported (seconds) after the first line
    version, source = resolve_export(model)
    env = quiet_env()
    env.update(MLFLOW_TRACKING_URI=uri, MLFLOW_REGISTRY_URI=uri)
    if provider is not None:
        env["ZOO_PROVIDER"] = provider
    if root is not None:
        env["ZOO_SERVE_ROOT"] = str(root)
    if max_bytes is not None:
        env["ZOO_SERVE_MAX_BYTES"] = str(max_bytes)
    log = log_path(f"serve-{port}")
    made_from = f" (the newest ONNX export of {source})" if source else ""
    run_quietly(
        Server(
            command=model_server_command(version.model_uri, host=host, port=port, workers=workers),
            env=env,
            probe_url=url_of(host, port, "/ping"),
            log=log,
            what="the model server",
            ready=(
                f"serving {version.name} v{version.version}{made_from} on {endpoint}",
                f"Ctrl-C stops it; its log: {log}",
            ),
        ),
        say=note,
    )


@click.command("ui")
@tracking_uri_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind.")
@click.option("--port", default=5000, show_default=True, type=click.IntRange(1, 65535))
def ui_cmd(host: str, port: int) -> None:
    """The MLflow UI on zoo's store until Ctrl-C (loopback only unless --host says otherwise).

    Runs `mlflow server` on the embedded store with its log in a file: the terminal shows
    that it is starting, then its URL once it answers.
    """
    from zoo.contract.errors import UsageError
    from zoo.registry import store
    from zoo.registry.server import quiet_env, ui_command
    from zoo.registry.supervise import Server, check_port, log_path, run_quietly, url_of

    uri = store.tracking_uri()  # mlflow is imported (seconds) after the first line
    if uri.startswith(("http://", "https://")):
        note(f"the registry at {uri} serves its own UI: open {uri}")
        return
    if host not in LOOPBACK:
        warn(f"serving the UI on {host}: anyone who reaches it can change the registry")
    if not store.is_embedded(uri):
        raise UsageError(
            f"zoo ui serves the embedded store or a server URL, not {uri}: run `mlflow ui "
            f"--backend-store-uri {uri}` yourself"
        )
    check_port(host, port)
    log = log_path(f"ui-{port}")
    url = url_of(host, port)
    note(f"starting the MLflow UI on {url} ...")
    uri = store.configure()
    run_quietly(
        Server(
            command=ui_command(uri, store.artifact_root().as_uri(), host=host, port=port),
            env=quiet_env(ui=True),
            probe_url=url_of(host, port, "/health"),
            log=log,
            what="the MLflow UI",
            ready=(f"MLflow UI on {url}", f"Ctrl-C stops it; its log: {log}"),
        ),
        say=note,
    )


COMMANDS = [serve_cmd, ui_cmd]
