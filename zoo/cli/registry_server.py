"""`zoo registry serve`: the team registry (mlflow server on PostgreSQL), attached to the
`zoo registry` group by zoo/cli/registry.py."""

from __future__ import annotations

import os

import click

from zoo.cli.output import note

__all__ = ["serve_cmd"]


@click.command("serve")
@click.option(
    "--backend-store-uri",
    envvar="ZOO_REGISTRY_DB",
    default="postgresql://zoo:zoo@127.0.0.1:5432/zoo",
    show_default=True,
    help="Database for runs and models (env ZOO_REGISTRY_DB).",
)
@click.option(
    "--artifacts-destination",
    envvar="ZOO_REGISTRY_ARTIFACTS",
    required=True,
    help="Artifact root the server stores and serves (env ZOO_REGISTRY_ARTIFACTS).",
)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=click.IntRange(1, 65535))
@click.option(
    "--allowed-host",
    "allowed_hosts",
    multiple=True,
    help="Host header clients use to reach the server (repeat); localhost is always allowed.",
)
@click.option("--basic-auth", is_flag=True, help="Require MLflow basic-auth logins.")
@click.option(
    "--auth-dir",
    envvar="ZOO_REGISTRY_AUTH_DIR",
    help="Folder for the basic-auth user database and config.",
)
@click.option("--print-command", is_flag=True, help="Print the mlflow command and exit.")
def serve_cmd(
    backend_store_uri: str,
    artifacts_destination: str,
    host: str,
    port: int,
    allowed_hosts: tuple[str, ...],
    basic_auth: bool,
    auth_dir: str | None,
    print_command: bool,
) -> None:
    """Run the team registry: mlflow server on PostgreSQL with an artifact root.

    This is the team's tracking and model registry server, not `zoo serve`, which serves
    one model's predictions over HTTP. See registry/README.md for setting up PostgreSQL
    and authentication.
    """
    from zoo.registry.server import ServerConfig, server_command

    cmd, env = server_command(
        ServerConfig(
            backend_store_uri=backend_store_uri,
            artifacts_destination=artifacts_destination,
            host=host,
            port=port,
            allowed_hosts=allowed_hosts,
            basic_auth=basic_auth,
            auth_dir=auth_dir,
        )
    )
    if print_command:
        click.echo(" ".join(cmd))
        return
    note(
        f"team registry on http://{host}:{port} (clients: MLFLOW_TRACKING_URI=http://{host}:{port})"
    )
    os.execvpe(cmd[0], cmd, {**os.environ, **env})
