"""Where zoo's MLflow store lives, how it is created, and the team server's command."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.error
import urllib.request
from base64 import b64encode
from pathlib import Path

import pytest
from registry_backends import start_auth_server, stop_group

from zoo.cli import run
from zoo.contract.errors import UsageError
from zoo.registry import store


def test_embedded_store_lives_under_zoo_home_never_in_the_current_folder(
    zoo_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    uri = store.configure()
    assert uri == f"sqlite:///{zoo_home / 'mlflow' / 'mlflow.db'}"
    exp = store.client().get_experiment(store.experiment_id("zoo"))
    assert exp.artifact_location.startswith((zoo_home / "mlflow" / "artifacts").as_uri())
    default = store.client().get_experiment("0")
    assert default.artifact_location.startswith((zoo_home / "mlflow").as_uri())
    assert os.environ["MLFLOW_ALLOW_PICKLE_DESERIALIZATION"] == "false"
    assert list(cwd.iterdir()) == []  # no ./mlruns, nothing else


def test_tracking_uri_option_and_env_point_elsewhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    other = f"sqlite:///{tmp_path / 'other.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", other)
    assert store.tracking_uri() == other and not store.is_embedded()
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    with pytest.raises(UsageError, match="tracking URI"):
        store.configure("not a uri")
    code = run(["registry", "--tracking-uri", other, "list", "--json"])
    assert code == 0 and '"count": 0' in capsys.readouterr().out
    assert (tmp_path / "other.db").exists()


def _dump(db: Path) -> tuple[dict[str, list[str]], dict[str, list[tuple[object, ...]]]]:
    """The schema (every table, index, trigger: its definition's lines, sorted, since
    MLflow's own migrations list a table's constraints in an order that changes with
    PYTHONHASHSEED) and every table's rows."""
    import contextlib
    import sqlite3

    with contextlib.closing(sqlite3.connect(db)) as conn:
        found = conn.execute("SELECT name, sql FROM sqlite_master").fetchall()
        schema = {n: sorted(x.strip(", ") for x in (sql or "").splitlines()) for n, sql in found}
        tables = [name for name, sql in found if sql and sql.startswith("CREATE TABLE")]
        rows = {t: sorted(conn.execute(f'SELECT * FROM "{t}"'), key=repr) for t in tables}
    return schema, rows


def test_a_new_store_copied_from_the_empty_schema_is_the_store_migrations_make(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from zoo.contract.plugins import reset_plugin_manager
    from zoo.registry.store_template import template_path

    def new_store(name: str) -> Path:
        monkeypatch.setenv("ZOO_HOME", str(tmp_path / name))
        monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # configure exports it
        reset_plugin_manager()
        store.configure()
        store.client().get_experiment("0")  # MLflow made its Default experiment
        return tmp_path / name / "mlflow" / "mlflow.db"

    # a cache folder that cannot be written: no template, the store is migrated in place
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "a-file"))
    (tmp_path / "a-file").write_text("not a folder\n")
    migrated = new_store("migrated")
    assert template_path().parent == tmp_path / "a-file" / "zoo"

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    first, copied = new_store("first"), new_store("copied")
    template = template_path()
    assert template.parent == tmp_path / "cache" / "zoo" and template.is_file()
    assert [p.name for p in template.parent.iterdir()] == [template.name]  # nothing half-made
    assert _dump(template)[1]["experiments"] == []  # no Default experiment in the template

    schema, rows = _dump(migrated)
    for db in (first, copied):
        got_schema, got_rows = _dump(db)
        assert got_schema == schema
        assert {t: r for t, r in got_rows.items() if t != "experiments"} == {
            t: r for t, r in rows.items() if t != "experiments"
        }
    # a template damaged since it was made is made again, not copied
    template.write_bytes(b"not a database")
    again = new_store("after-damage")
    assert _dump(again)[0] == schema and _dump(template)[1]["experiments"] == []
    # each store's Default experiment names its own artifact folder, as after a migration
    for db in (migrated, first, copied, again):
        default = store_client(db).get_experiment("0")
        assert default.name == "Default"
        assert default.artifact_location == (db.parent / "artifacts").as_uri() + "/0"


def store_client(db: Path) -> object:
    from mlflow import MlflowClient

    return MlflowClient(f"sqlite:///{db}")


def test_bare_name_lookup_does_not_create_a_store(zoo_home: Path) -> None:
    from zoo.registry import has_model

    assert has_model("nothing-here") is False
    assert not (zoo_home / "mlflow" / "mlflow.db").exists()


def test_store_lock_serialises_processes(tmp_path: Path) -> None:
    """Three processes taking the lock never overlap (what store creation relies on).

    Overlap is made certain without the lock, whatever the machine's load: all three
    wait on a file barrier until each is at the lock, and the one inside waits there for
    the others to come in too (up to 2 s, which only a working lock uses up: each
    holder stays that long, so the test takes about 6 s)."""
    script = (
        "import sys, time; from pathlib import Path; from zoo.registry.store import store_lock\n"
        "log, lock, me = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]\n"
        "(log.parent / f'at-lock-{me}').touch()\n"
        "deadline = time.monotonic() + 120\n"
        "while len(list(log.parent.glob('at-lock-*'))) < 3:  # the barrier\n"
        "    assert time.monotonic() < deadline; time.sleep(0.01)\n"
        "with store_lock(lock):\n"
        "    with log.open('a') as f: f.write('in\\n')\n"
        "    inside = time.monotonic() + 2\n"
        "    while log.read_text().split().count('in') < 3 and time.monotonic() < inside:\n"
        "        time.sleep(0.01)\n"
        "    with log.open('a') as f: f.write('out\\n')\n"
    )
    log, lock = tmp_path / "log", tmp_path / "lock"
    procs = [
        subprocess.Popen([sys.executable, "-c", script, str(log), str(lock), str(i)])
        for i in range(3)
    ]
    assert all(p.wait(180) == 0 for p in procs)
    assert log.read_text().split() == ["in", "out"] * 3


def test_serve_refuses_open_interface_without_auth_and_prints_its_command(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    args = ["registry", "serve", "--artifacts-destination", str(tmp_path / "a")]
    assert run([*args, "--host", "0.0.0.0", "--print-command"]) == 2
    assert "--basic-auth" in capsys.readouterr().err
    code = run([*args, "--allowed-host", "registry.example.org", "--print-command"])
    out = capsys.readouterr().out
    assert code == 0
    assert "--backend-store-uri postgresql://zoo:zoo@127.0.0.1:5432/zoo" in out
    assert "--allowed-hosts registry.example.org," in out and "--serve-artifacts" in out


@pytest.mark.slow
def test_basic_auth_server_refuses_anonymous_and_accepts_the_admin(tmp_path: Path) -> None:
    """A real `mlflow server --app-name basic-auth` with the config zoo writes."""
    proc, port = start_auth_server(tmp_path)
    password = (tmp_path / "auth" / "admin-password").read_text().strip()
    assert oct((tmp_path / "auth" / "admin-password").stat().st_mode)[-3:] == "600"
    try:
        url = f"http://127.0.0.1:{port}/api/2.0/mlflow/experiments/search?max_results=1"
        with pytest.raises(urllib.error.HTTPError) as denied:
            urllib.request.urlopen(url, timeout=30)
        assert denied.value.code == 401
        token = b64encode(f"admin:{password}".encode()).decode()
        req = urllib.request.Request(url, headers={"Authorization": f"Basic {token}"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            assert resp.status == 200
    finally:
        stop_group(proc)
