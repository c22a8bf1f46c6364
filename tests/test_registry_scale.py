"""The registry at size (issue 26): `zoo registry show`, `lineage` and one page of `list`
ask the store for what they show, so what they read does not grow with the store.

Two stores hold the same model `subject` (a chain, an export, a version of two parents,
an alias, a run with its dataset) beside 50 or 300 other versions, made through MLflow's
client with zoo's own records (bench/registry_scale.py's). On the direct SQLite reader
the rows zoo reads are counted (a counting sqlite3 connection); through MLflow (the
same store as ``sqlite+pysqlite://``, which zoo does not read directly: the calls a
server answers) the SQL statements and the model-version and tag rows MLflow loads
(SQLAlchemy events). Pages cover every version once, in order, on both paths. How long
the commands take at 10,000 versions is bench/registry_scale.py's figure, not a test's.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shlex
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from zoo.cli import run

ROOT = Path(__file__).resolve().parents[1]
SUBJECT = "subject"


def _bench() -> Any:
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        import registry_scale
    finally:
        sys.path.pop(0)
    return registry_scale


def _build(folder: Path, filler: int) -> dict[str, Any]:
    """``subject`` and ``filler`` other versions in ``folder/registry.db``."""
    bench = _bench()
    base = bench.BASES[0][0]
    # bases whose names start like another's: MLflow's LIKE matches both, zoo keeps one
    others = [b for b, _ in bench.BASES[1:8]] + ["local:in-house-01", "local:in-house-0"]
    bases = [*bench.BASES, ("local:in-house-01", "mit")]
    uri = f"sqlite:///{folder / 'registry.db'}"
    with pytest.MonkeyPatch.context() as mp, bench.no_fsync():
        mp.setattr(bench, "BASES", bases)
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        from mlflow.entities import Dataset, DatasetInput, InputTag

        from zoo.registry.store import client, experiment_id

        mc, exp = client(), experiment_id()
        made: dict[str, dict[str, Any]] = {}
        rng = random.Random(filler)
        source = (folder / "no-artifacts").as_uri()  # nothing there: a read would fail

        def register(name: str, parents: list[str], root: str, **kw: Any) -> str:
            item = {
                "name": name,
                "relation": kw.get("relation", "finetune"),
                "parents": parents,
                "model": {"name": name, "base": root, "data": [f"{rng.getrandbits(256):064x}"]},
            }
            record, tags, description = bench.record_for(item, made, rng)
            if not any(u.startswith(f"models:/{name}/") for u in made):
                mc.create_registered_model(name, tags={"zoo.kind": "zoo-model"})
            mv = mc.create_model_version(
                name,
                source,
                run_id=kw.get("run_id"),
                tags=tags,
                description=description,
                await_creation_for=0,
            )
            made[f"models:/{name}/{mv.version}"] = {"record": record, "tags": tags}
            return f"models:/{name}/{mv.version}"

        for i in range(filler):
            model, root = f"filler-{i // 5:03d}", others[(i // 5) % len(others)]
            earlier = [u for u in made if u.startswith(f"models:/{model}/")]
            register(model, [rng.choice(earlier)] if earlier else [root], root)
        run_id = mc.create_run(exp).info.run_id
        digest = "sha256:" + "ab" * 32
        ds = Dataset(
            "pets",
            digest[7:39],
            "local",
            json.dumps({"uri": "/data/pets"}),
            profile=json.dumps({"classes": ["a", "b"]}),
        )
        mc.log_inputs(
            run_id,
            [
                DatasetInput(
                    ds,
                    [
                        InputTag("mlflow.data.context", "training"),
                        InputTag("zoo.split.train", "30"),
                    ],
                )
            ],
        )
        rng.seed(0)  # the subject's records are the same in every store
        one = register(SUBJECT, [base], base)
        two = register(SUBJECT, [one], base)
        three = register(SUBJECT, [one], base)
        four = register(SUBJECT, [three], base, run_id=run_id)
        register(f"{SUBJECT}.onnx", [two], base, relation="export")
        register(f"combo-{SUBJECT}", [four, "models:/filler-000/1"], base)
        mc.set_registered_model_alias(SUBJECT, "champion", "3")
    return {"uri": uri, "versions": filler + 6, "base": base.split("@")[0], "db": folder}


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> dict[int, dict[str, Any]]:
    return {n: _build(tmp_path_factory.mktemp(f"store-{n}"), n) for n in (50, 300)}


@contextlib.contextmanager
def direct_reads() -> Iterator[dict[str, int]]:
    """Statements zoo's SQLite reader runs and the rows it reads."""
    from zoo.registry import sqlite_read

    seen = {"statements": 0, "rows": 0}

    class Cursor(sqlite3.Cursor):
        def __next__(self) -> Any:
            row = super().__next__()
            seen["rows"] += 1
            return row

        def fetchone(self) -> Any:
            row = super().fetchone()
            seen["rows"] += row is not None
            return row

        def fetchall(self) -> list[Any]:
            rows = super().fetchall()
            seen["rows"] += len(rows)
            return rows

    class Connection(sqlite3.Connection):
        def execute(self, sql: str, params: Any = (), /) -> Any:  # type: ignore[override]
            seen["statements"] += 1
            return self.cursor(Cursor).execute(sql, params)

    def counting(db: Path) -> sqlite3.Connection:
        return sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True, factory=Connection)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sqlite_read, "_open", counting)
        yield seen


@contextlib.contextmanager
def mlflow_reads() -> Iterator[dict[str, int]]:
    """SQL statements MLflow's store runs, and the version and tag rows it loads."""
    from mlflow.store.model_registry.dbmodels.models import SqlModelVersion, SqlModelVersionTag
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    seen = {"statements": 0, "rows": 0}

    def statement(*_: Any) -> None:
        seen["statements"] += 1

    def row(*_: Any) -> None:
        seen["rows"] += 1

    hooks = [
        (Engine, "before_cursor_execute", statement),
        (SqlModelVersion, "load", row),
        (SqlModelVersionTag, "load", row),
    ]
    for target, name, fn in hooks:
        event.listen(target, name, fn)
    try:
        yield seen
    finally:
        for target, name, fn in hooks:
            event.remove(target, name, fn)


def _use(store: dict[str, Any], monkeypatch: pytest.MonkeyPatch, through_mlflow: bool) -> None:
    uri = store["uri"].replace("sqlite:", "sqlite+pysqlite:") if through_mlflow else store["uri"]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)


def _zoo(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    capsys.readouterr()
    code = run(["registry", *args])
    out = capsys.readouterr()
    assert code == 0, out.err
    return out.out


COMMANDS = {
    "show": ("show", f"models:/{SUBJECT}/4"),
    "lineage": ("lineage", SUBJECT, "--json"),
    "page": ("list", "--limit", "20", "--json"),
}


def _reads(
    stores: dict[int, dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    through_mlflow: bool,
) -> dict[str, dict[int, dict[str, int]]]:
    from zoo.registry.tree import children_of

    out: dict[str, dict[int, dict[str, int]]] = {k: {} for k in [*COMMANDS, "children_of"]}
    for n, store in stores.items():
        _use(store, monkeypatch, through_mlflow)
        for what, args in COMMANDS.items():
            _zoo(capsys, *args)  # once first: MLflow makes its engine and checks its schema
            with mlflow_reads() if through_mlflow else direct_reads() as seen:
                _zoo(capsys, *args)
            out[what][n] = dict(seen)
        with mlflow_reads() if through_mlflow else direct_reads() as seen:
            assert len(children_of(f"models:/{SUBJECT}/1")) == 2
        out["children_of"][n] = dict(seen)
    return out


@pytest.mark.parametrize("through_mlflow", [False, True], ids=["sqlite-direct", "mlflow"])
def test_show_lineage_and_a_page_read_the_same_at_50_and_300_versions(
    stores: dict[int, dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    through_mlflow: bool,
) -> None:
    reads = _reads(stores, monkeypatch, capsys, through_mlflow)
    for what in ("show", "lineage", "children_of"):  # one model's: the same reads
        assert reads[what][50] == reads[what][300], (what, reads[what])
        assert 0 < reads[what][300]["rows"] < 600, (what, reads[what])
    for n in (50, 300):  # a page of 20: bounded by the page, whatever the store holds
        assert reads["page"][n]["statements"] <= 10 * 20 and reads["page"][n]["rows"] <= 20 * 30
    assert reads["page"][300]["statements"] == reads["page"][50]["statements"]


@pytest.mark.parametrize("through_mlflow", [False, True], ids=["sqlite-direct", "mlflow"])
def test_pages_cover_every_version_once_in_order(
    stores: dict[int, dict[str, Any]], monkeypatch: pytest.MonkeyPatch, through_mlflow: bool
) -> None:
    from zoo.registry.paging import VersionFilter
    from zoo.registry.search import find, page

    store = stores[300]
    _use(store, monkeypatch, through_mlflow)
    everything = [v.model_uri for v in find()]
    assert len(everything) == store["versions"]
    assert everything == sorted(everything, key=lambda u: (u.split("/")[1], int(u.split("/")[2])))
    # "local:in-house-0" LIKE-matches "local:in-house-01" in MLflow: zoo leaves those out
    cases = [
        (VersionFilter(), 40),
        (VersionFilter(base="local:in-house-0"), 7),
        (VersionFilter(tags=(("zoo.license", "apache-2.0"),)), 25),
    ]
    for f, limit in cases:
        want = [v.model_uri for v in find(f)]
        assert want and [u for u in everything if u in set(want)] == want
        got, token, starts = [], None, []
        while True:
            p = page(f, limit=limit, token=token)
            starts.append(p.start)
            got += [v.model_uri for v in p.versions]
            assert len(p.versions) == limit or p.next_page_token is None
            token = p.next_page_token
            if token is None:
                break
        assert got == want, f
        assert starts == list(range(0, limit * len(starts), limit)) and p.total == len(want)


def test_the_next_page_line_is_the_command_for_the_next_page(
    stores: dict[int, dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    store = stores[50]
    _use(store, monkeypatch, through_mlflow=False)
    monkeypatch.setenv("COLUMNS", "250")
    first = _zoo(capsys, "list", "--license", "apache-2.0", "--limit", "9").splitlines()
    total = json.loads(_zoo(capsys, "list", "--license", "apache-2.0", "--json"))["count"]
    assert total > 18 and first[-2] == f"versions 1-9 of {total}"
    more, _, command = first[-1].partition("; next page: ")
    assert more == f"{total - 9} more" and command.startswith("zoo registry list --license")
    second = _zoo(capsys, *shlex.split(command)[2:]).splitlines()
    assert second[-2] == f"versions 10-18 of {total}"
    doc = json.loads(_zoo(capsys, "list", "--license", "apache-2.0", "--limit", "9", "--json"))
    assert doc["count"] == 9 and doc["total"] == total and doc["next_page_token"]
    rest = json.loads(
        _zoo(
            capsys,
            "list",
            "--license",
            "apache-2.0",
            "--json",
            "--page-token",
            doc["next_page_token"],
        )
    )
    assert rest["count"] == total - 9 and rest["next_page_token"] is None
    everything = json.loads(_zoo(capsys, "list", "--json"))  # --json: every version
    assert everything["count"] == store["versions"] and everything["next_page_token"] is None
    # a token of another listing, or none at all: one line, exit 2
    for token in (doc["next_page_token"], "not-a-token"):
        capsys.readouterr()
        assert run(["registry", "list", "--page-token", token]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "--page-token" in err and "Traceback" not in err


def test_both_paths_answer_alike_and_as_reading_everything_would(
    stores: dict[int, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    from zoo.registry import get_version, sqlite_read
    from zoo.registry.datasets import run_datasets
    from zoo.registry.search import find
    from zoo.registry.tree import (
        _grow,
        _roots,
        children_of,
        derivative_trees,
        lineage_trees,
        parent_keys,
    )

    store = stores[300]
    refs = [f"models:/{SUBJECT}/2", f"models:/{SUBJECT}@champion", SUBJECT, "filler-003"]
    answers = []
    for through_mlflow in (False, True):
        _use(store, monkeypatch, through_mlflow)
        everything = find()
        mine = [v for v in everything if v.name == SUBJECT]
        roots = sorted({r for v in mine for r in _roots(v)})
        trees = [t.to_dict() for t in lineage_trees(SUBJECT)]
        assert trees == [t.to_dict() for t in _grow(roots, everything)]  # the old reading
        uri = f"models:/{SUBJECT}/1"
        assert children_of(uri) == [v for v in everything if uri in parent_keys(v)]
        run_id = get_version(f"models:/{SUBJECT}/4").run_id
        direct = sqlite_read.run_datasets(run_id)
        datasets = run_datasets(run_id) if direct is None else direct
        assert [d["name"] for d in datasets] == ["pets"]
        answers.append(
            (
                [v.to_dict() for v in everything],
                [get_version(r).to_dict() for r in refs],
                trees,
                [t.to_dict() for t in derivative_trees(store["base"])],
                [t.to_dict() for t in derivative_trees("local:in-house-0")],
                datasets,
            )
        )
    assert answers[0] == answers[1]
    assert answers[0][1][1]["aliases"] == ["champion"]


def test_show_reads_neither_mlflow_nor_an_artifact(stores: dict[int, dict[str, Any]]) -> None:
    store = stores[50]
    code = (
        "import sys\nfrom zoo.cli import run\n"
        f"rc = run(['registry', 'show', 'models:/{SUBJECT}/4'])\n"
        "heavy = [m for m in ('mlflow', 'torch') if m in sys.modules]\n"
        "print('HEAVY', heavy, rc, file=sys.stderr)\n"
    )
    env = {**os.environ, "MLFLOW_TRACKING_URI": store["uri"], "CI": "true"}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    assert "HEAVY [] 0" in done.stderr, done.stderr
    assert "pets (training) digest" in done.stdout and not (store["db"] / "no-artifacts").exists()
