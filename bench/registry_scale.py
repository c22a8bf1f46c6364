"""`zoo registry list`, `show` and `lineage` on a store of --versions model versions
(10,000), on the embedded SQLite store and on the PostgreSQL-backed `mlflow server`.

The store is built through MLflow's client, as zoo registers (zoo's own record, tags and
description functions: zoo.registry.lineage.build_record, zoo.registry.write's tags,
zoo.registry.describe), without training or uploading weights: a few hundred models
over a few dozen base models, chains of fine-tunes (a version's parent is its base or an
earlier version, sometimes another model's), exports, versions of two parents, licences
inherited and declared, data sets, aliases; each version with its run (params,
metrics, its dataset input) and its logged model, and each parent's description listing
its children. The SQLite store is built once under --store-dir and reused; the
PostgreSQL one is written straight through MLflow's SqlAlchemyStore (the client on the
``postgresql://`` URI), then served by `mlflow server` as zoo starts it
(zoo.registry.server.server_command; tests/registry_backends.py's way of waiting for
it). Its database is new and dropped at the end, unless --keep-db (then it is reused
by the next run with the same --versions).

Each figure is a whole process as a user runs it (`python -m zoo registry ...`, from a
folder of its own: PYTHONPATH decides which zoo), warm (one run first, not counted), the
median of --repeat; a command that fails is reported as failed, with its last line.
--before PATH times another zoo tree (e.g. `git archive` of an earlier commit) on the
same stores, after this one.

    python bench/registry_scale.py [--versions 10000] [--repeat 5]
        [--backends sqlite,postgres] [--store-dir DIR] [--keep-db] [--before PATH]
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
FORMAT = 1  # of the stores this script builds (a store of another format is rebuilt)
GOALS = {"sqlite": 2.0, "postgres": 5.0}
NEUTRAL = Path(os.environ.get("TMPDIR", "/tmp"))  # where the timed commands run
BASES = [  # (reference, licence): providers' references as zoo pins them
    *(
        (f"timm:{arch}@{random.Random(arch).getrandbits(160):040x}", lic)
        for arch, lic in [
            ("resnet50.a1_in1k", "apache-2.0"),
            ("resnet18.a1_in1k", "apache-2.0"),
            ("convnext_tiny.fb_in22k", "apache-2.0"),
            ("convnext_small.fb_in22k_ft_in1k", "apache-2.0"),
            ("vit_base_patch16_224.augreg_in21k", "apache-2.0"),
            ("vit_small_patch16_224.augreg_in21k", "apache-2.0"),
            ("efficientnet_b0.ra_in1k", "apache-2.0"),
            ("efficientnet_b3.ra2_in1k", "apache-2.0"),
            ("mobilenetv3_large_100.ra_in1k", "apache-2.0"),
            ("regnety_016.tv2_in1k", "bsd-3-clause"),
            ("deit_small_patch16_224.fb_in1k", "apache-2.0"),
            ("eva02_tiny_patch14_224.mim_in22k", "mit"),
            ("beit_base_patch16_224.in22k_ft_in22k", "apache-2.0"),
            ("swin_tiny_patch4_window7_224.ms_in1k", "mit"),
            ("levit_128s.fb_dist_in1k", "apache-2.0"),
            ("densenet121.tv_in1k", "bsd-3-clause"),
        ]
    ),
    *((f"effnet-lite:lite{i}", "apache-2.0") for i in range(5)),
    *(
        (f"hf:{repo}@{random.Random(repo).getrandbits(160):040x}", lic)
        for repo, lic in [
            ("facebook/dinov2-small", "apache-2.0"),
            ("facebook/dinov2-base", "apache-2.0"),
            ("google/vit-base-patch16-224", "apache-2.0"),
            ("microsoft/resnet-50", "apache-2.0"),
            ("lab/nc-backbone", "cc-by-nc-4.0"),
        ]
    ),
    *((f"torchvision:{a}", "bsd-3-clause") for a in ("resnet34", "mobilenet_v3_small")),
    *((f"local:in-house-{i}", "unknown") for i in range(4)),
]
TASKS = ["pets", "defects", "xray", "leaves", "birds", "signs", "parts", "food", "cells"]
STRATEGIES = ["linear-probe", "full", "lp-ft", "partial", "lora"]


def hexdigest(rng: random.Random) -> str:
    return f"{rng.getrandbits(256):064x}"


@functools.cache
def _zoo() -> Any:
    """zoo's own writers (imported once the environment points at the store)."""
    from zoo.registry import lineage, write
    from zoo.registry.describe import describe_markdown, version_link

    versions = lineage.library_versions()  # importlib.metadata, once, not per version
    lineage.library_versions = lambda: dict(versions)  # type: ignore[assignment]
    return lineage, write, describe_markdown, version_link


def plan(n: int, seed: int = 0) -> list[dict[str, Any]]:
    """The versions to make, in registration order: name, parents, licence, data."""
    rng = random.Random(seed)
    n_models = max(1, n // 33)
    models = []
    for i in range(n_models):
        base, lic = rng.choice(BASES)
        data = [hexdigest(rng) for _ in range(rng.randint(1, 3))]
        models.append(
            {
                "name": f"{rng.choice(TASKS)}-{i:04d}",
                "base": base,
                "license": lic,
                "data": data,
                "versions": [],
            }
        )
    out: list[dict[str, Any]] = []
    by_base: dict[str, list[str]] = {}
    while len(out) < n:
        m = models[
            min(int(rng.paretovariate(1.1)) - 1, n_models - 1)
            if rng.random() < 0.3
            else rng.randrange(n_models)
        ]
        kind = rng.random()
        if m["versions"] and kind < 0.05:  # an export of one of its versions
            source = rng.choice(m["versions"])
            out.append(
                {"name": f"{m['name']}.onnx", "relation": "export", "parents": [source], "model": m}
            )
            continue
        if kind < 0.06:  # two parents of different bases (a multi-backbone probe)
            others = [v for b, vs in by_base.items() if b != m["base"] for v in vs[-3:]]
            if m["versions"] and others:
                parents = [rng.choice(m["versions"]), rng.choice(others)]
                out.append(
                    {
                        "name": f"combo-{m['name']}",
                        "relation": "finetune",
                        "parents": parents,
                        "model": m,
                    }
                )
                continue
        if not m["versions"]:
            peers = by_base.get(m["base"], [])
            parent = rng.choice(peers) if peers and rng.random() < 0.15 else m["base"]
        else:
            parent = m["base"] if rng.random() < 0.3 else rng.choice(m["versions"])
        out.append({"name": m["name"], "relation": "finetune", "parents": [parent], "model": m})
        count = sum(1 for o in out if o["name"] == m["name"])
        uri = f"models:/{m['name']}/{count}"
        m["versions"].append(uri)
        by_base.setdefault(m["base"], []).append(uri)
    return out


def _parent_info(ref: str, made: dict[str, dict[str, Any]]) -> Any:
    lineage, *_ = _zoo()
    from zoo.licenses.compat import Ancestor

    if ref.startswith("models:/"):
        rec, tags = made[ref]["record"], made[ref]["tags"]
        return lineage.ParentInfo(
            reference=ref,
            kind="registered",
            sha256=tags.get("zoo.weights_sha256"),
            license=rec["license"]["id"],
            base=rec["base"]["reference"] or ref,
            base_sha256=rec["base"]["sha256"],
            base_license=rec["base"]["license"] or "unknown",
            chain=(*rec["chain"], ref),
            licenses=(
                *(Ancestor.from_dict(a) for a in rec["license"]["ancestors"][:-1]),
                Ancestor(ref, rec["license"]["id"], rec["license"]["override"]),
            ),
        )
    lic = dict(BASES)[ref]
    return lineage.ParentInfo(
        reference=ref,
        kind="local" if ref.startswith("local:") else "provider",
        sha256=None,
        license=lic,
        base=ref,
        base_sha256=None,
        base_license=lic,
        chain=(ref,),
        licenses=(Ancestor(ref, lic),),
    )


def record_for(item: dict[str, Any], made: dict[str, dict[str, Any]], rng: random.Random) -> Any:
    """The lineage record, tags and description zoo would register ``item`` with."""
    lineage, write, describe_markdown, _ = _zoo()
    parents = [_parent_info(p, made) for p in item["parents"]]
    model = item["model"]
    classes = [f"class{i}" for i in range(rng.randint(2, 12))]
    counts = {c: rng.randint(20, 400) for c in classes}
    strategy = rng.choice(STRATEGIES)
    declared = None if rng.random() < 0.9 else "cc-by-nc-4.0"
    lic = declared or (parents[0].license if len(parents) == 1 else "apache-2.0")
    recipe = {
        "batch_size": 32,
        "epochs": rng.randint(1, 20),
        "lr": None,
        "seed": rng.randint(0, 9),
        "strategy": strategy,
        "val_split": 0.2,
        "test_split": 0.1,
        "optimizer": "adamw",
        "precision": "auto",
        "weight_decay": 0.05,
        "label_smoothing": 0.1,
        "deterministic": False,
        "nproc_per_node": 1,
    }
    metrics = {
        "val_accuracy": rng.random(),
        "val_loss": rng.random() * 2,
        "test_accuracy": rng.random(),
        "train_accuracy": rng.random(),
        "train_loss": rng.random() * 2,
        "epochs": float(recipe["epochs"]),
        **{f"val_accuracy.{c}": rng.random() for c in classes},
    }
    digest = "sha256:" + rng.choice(model["data"])
    export = item["relation"] == "export"
    record = lineage.build_record(
        name=item["name"],
        relation=item["relation"],
        parents=parents,
        license_id=lic,
        license_inherited=declared is None,
        license_override="bench: declared" if declared else None,
        strategy=None if export else strategy,
        strategy_settings={}
        if export
        else {"recipe": recipe, "runtime": {"device": "cpu", "processes": 1}},
        strategy_plugin={
            "plugin": "strategies",
            "distribution": "transfer-zoo",
            "version": "0.1.0",
        },
        dataset={
            "digest": digest,
            "classes": classes,
            "counts": counts,
            "source": "folder",
            "path": f"/data/{model['name']}",
            "split": {
                "seed": 0,
                "val_split": 0.2,
                "train": 300,
                "val": 75,
                "chosen_by": "validation",
                "record": "split.json",
            },
        },
        metrics=metrics,
        preprocessing={
            "input_size": [3, 224, 224],
            "mean": [0.485, 0.456, 0.406],
            "std": [0.229, 0.224, 0.225],
            "interpolation": "bicubic",
            "crop_pct": 0.95,
        },
        class_names=classes,
        weights={
            "file": "weights/model.safetensors",
            "sha256": hexdigest(rng),
            "format": "safetensors",
        },
        fmt="onnx" if export else "pytorch",
    )
    if export:
        record["derived_from"] = item["parents"][0]
        record["evaluation"] = {"precision": "fp32", "runtime": "onnxruntime"}
    else:
        record["evaluation"] = {"precision": "fp32", "training_precision": "fp32"}
    tags = write._version_tags(
        record, weights_sha=record["weights"]["sha256"], model_id="", fmt=record["model_format"]
    )
    tags["zoo.recipe_key"] = hexdigest(rng)[:16]
    return record, tags, describe_markdown(record)


@contextlib.contextmanager
def no_fsync() -> Iterator[None]:
    """SQLite without an fsync per commit while a store is built (the store is the
    builder's own; without it the 2-core machine spends the build waiting on the disk).
    The setting lasts as long as the connections opened meanwhile; the store's file is
    as MLflow writes it."""
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    def pragma(dbapi_conn: Any, _record: Any) -> None:
        if type(dbapi_conn).__module__.startswith("sqlite3"):
            dbapi_conn.execute("PRAGMA synchronous = OFF")

    event.listen(Engine, "connect", pragma)
    try:
        yield
    finally:
        event.remove(Engine, "connect", pragma)


def build(uri: str, n: int, experiment: str | None = None) -> None:
    """The store: ``n`` versions registered through MLflow's client at ``uri``."""
    import mlflow
    from mlflow import MlflowClient
    from mlflow.entities import Dataset, DatasetInput, InputTag, Metric, Param, RunTag

    from zoo.registry.describe import with_children
    from zoo.registry.records import RegisteredVersion
    from zoo.registry.tree import parent_keys

    mlflow.set_tracking_uri(uri)  # MLflow's store looks logged models up through it
    mc = MlflowClient(tracking_uri=uri, registry_uri=uri)
    exp = experiment or mc.create_experiment("zoo", artifact_location="mlflow-artifacts:/zoo")
    rng = random.Random(1)
    items = plan(n)
    made: dict[str, dict[str, Any]] = {}
    counts: dict[str, int] = {}
    start = time.perf_counter()
    for i, item in enumerate(items):
        name = item["name"]
        if name not in counts:
            mc.create_registered_model(
                name,
                tags={"zoo.kind": "zoo-model"},
                description=f"Registered by zoo; base model `{item['model']['base']}`.",
            )
            counts[name] = 0
        record, tags, description = record_for(item, made, rng)
        now = int(time.time() * 1000)
        run = mc.create_run(exp, run_name=f"register {name}")
        run_id = run.info.run_id
        recipe = record["strategy"]["settings"].get("recipe") or {}
        mc.log_batch(
            run_id,
            metrics=[Metric(k, v, now, 0) for k, v in record["metrics"].items()],
            params=[Param(k, str(v)) for k, v in recipe.items()],
            tags=[RunTag("zoo.registration", f"pending {name}")],
        )
        digest = record["dataset"]["digest"]
        ds = Dataset(
            name=f"data-{digest[7:15]}",
            digest=digest[7:39],
            source_type="local",
            source=json.dumps({"uri": record["dataset"]["path"]}),
            profile=json.dumps({"zoo.dataset_digest": digest, "classes": record["class_names"]}),
        )
        mc.log_inputs(
            run_id,
            datasets=[
                DatasetInput(
                    ds,
                    [
                        InputTag("mlflow.data.context", "training"),
                        InputTag("zoo.dataset_digest", digest),
                        InputTag("zoo.split.train", "300"),
                        InputTag("zoo.split.validation", "75"),
                    ],
                )
            ],
        )
        lm = mc.create_logged_model(exp, name="model", source_run_id=run_id, tags={"zoo.for": name})
        tags["zoo.model_id"] = lm.model_id
        mv = mc.create_model_version(
            name,
            f"models:/{lm.model_id}",
            run_id=run_id,
            tags=tags,
            description=description,
            await_creation_for=0,
        )
        mc.set_tag(run_id, "zoo.registration", f"{name}/{mv.version}")
        mc.set_terminated(run_id, "FINISHED")
        counts[name] = int(mv.version)
        uri_ = f"models:/{name}/{mv.version}"
        made[uri_] = {"record": record, "tags": tags, "description": description}
        if (i + 1) % 500 == 0 or i + 1 == len(items):
            rate = (i + 1) / (time.perf_counter() - start)
            print(f"  {i + 1}/{n} versions ({rate:.0f}/s)", file=sys.stderr, flush=True)
    # what registration keeps in each parent's description: its children, linked
    versions = {
        u: RegisteredVersion(
            name=u.split("/")[1],
            version=int(u.split("/")[2]),
            run_id=None,
            model_uri=u,
            license=m["tags"]["zoo.license"],
            lineage=m["record"],
            preprocessing={},
            class_names=(),
            tags=m["tags"],
            description=m["description"],
        )
        for u, m in made.items()
    }
    children: dict[str, list[RegisteredVersion]] = {}
    for v in versions.values():
        for key in parent_keys(v):
            if key in versions:
                children.setdefault(key, []).append(v)
    for key, kids in children.items():
        v = versions[key]
        kids.sort(key=lambda k: (k.name, k.version))
        mc.update_model_version(
            v.name, str(v.version), description=with_children(v.description, kids)
        )
    for j, name in enumerate(sorted(counts)):
        if j % 3 == 0:
            mc.set_registered_model_alias(name, "champion", str(max(1, counts[name] // 2)))
    print(f"  built in {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)


def subjects(n: int) -> dict[str, str]:
    """The model and version the timed commands ask about: the plan's model whose
    versions number nearest the mean, its last version (which has a registered parent)."""
    items = plan(n)
    per: dict[str, int] = {}
    for it in items:
        per[it["name"]] = per.get(it["name"], 0) + 1
    plain = {k: c for k, c in per.items() if "." not in k and not k.startswith("combo-")}
    mean = n / max(1, len(per))
    name = min(sorted(plain), key=lambda k: abs(plain[k] - mean))
    base = next(it["model"]["base"] for it in items if it["name"] == name)
    return {"name": name, "version": f"models:/{name}/{plain[name]}", "base": base.split("@")[0]}


def sqlite_store(store_dir: Path, n: int) -> dict[str, str]:
    """The embedded store of a zoo home with ``n`` versions (built once, then reused)."""
    home = store_dir / f"sqlite-{n}" / "home"
    mark = home.parent / "built.json"
    env = {"ZOO_HOME": str(home)}
    if mark.exists() and json.loads(mark.read_text()).get("format") == FORMAT:
        return env
    import shutil

    shutil.rmtree(home.parent, ignore_errors=True)
    home.mkdir(parents=True)
    os.environ["ZOO_HOME"] = str(home)
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    from zoo.registry.store import client, experiment_id, tracking_uri

    with no_fsync():
        client()  # zoo creates the embedded store as it does for a user
        print(f"building {n} versions in {home} (SQLite)", file=sys.stderr, flush=True)
        build(tracking_uri(), n, experiment=experiment_id())
    mark.write_text(json.dumps({"format": FORMAT, "versions": n}) + "\n")
    return env


class PgStore:
    """A PostgreSQL database with ``n`` versions, served by `mlflow server`."""

    def __init__(self, store_dir: Path, n: int, keep: bool) -> None:
        sys.path.insert(0, str(ROOT / "tests"))
        import registry_backends as rb

        self.rb, self.keep = rb, keep
        self.database = f"zoo_bench_scale_{n}_f{FORMAT}"
        self.workdir = store_dir / f"postgres-{n}"
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.db_uri = rb.PG_ADMIN_URI.rsplit("/", 1)[0] + f"/{self.database}"
        mark = self.workdir / "built.json"
        exists = self._exists()
        if not (keep and exists and mark.exists()):
            rb._admin(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')
            rb._admin(f'CREATE DATABASE "{self.database}"')
            mark.unlink(missing_ok=True)
            print(
                f"building {n} versions in PostgreSQL database {self.database}",
                file=sys.stderr,
                flush=True,
            )
            build(self.db_uri, n)
            mark.write_text(json.dumps({"format": FORMAT, "versions": n}) + "\n")
        self.proc = None
        self.proc, port = self._serve()
        home = self.workdir / "home"  # zoo's own files; the store is the server's
        self.env = {"MLFLOW_TRACKING_URI": f"http://127.0.0.1:{port}", "ZOO_HOME": str(home)}

    def _exists(self) -> bool:
        import psycopg

        with psycopg.connect(self.rb.PG_ADMIN_URI, autocommit=True, connect_timeout=5) as conn:
            row = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (self.database,)
            ).fetchone()
        return row is not None

    def _serve(self) -> Any:
        from zoo.registry.server import ServerConfig, server_command

        log = self.workdir / "mlflow-server.log"

        def start(port: int) -> subprocess.Popen[Any]:
            cmd, env = server_command(
                ServerConfig(self.db_uri, str(self.workdir / "artifacts"), port=port)
            )
            return subprocess.Popen(
                cmd,
                stdout=open(log, "w"),
                stderr=subprocess.STDOUT,
                env={**os.environ, **env},
                start_new_session=True,
            )

        return self.rb.start_on_free_port(start, lambda p: f"http://127.0.0.1:{p}/health", log, 240)

    def close(self) -> None:
        if self.proc is not None:
            self.rb.stop_group(self.proc)
        if not self.keep:
            self.rb._admin(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')
            (self.workdir / "built.json").unlink(missing_ok=True)


def commands(s: dict[str, str]) -> list[tuple[str, list[str]]]:
    """The commands timed; listings of the whole store last (a server still busy with
    one its client gave up on would slow the next command)."""
    return [
        (f"show {s['version']}", ["registry", "show", s["version"]]),
        (f"lineage {s['name']}", ["registry", "lineage", s["name"]]),
        (f"lineage {s['base']}", ["registry", "lineage", s["base"]]),
        ("list --license cc-by-nc-4.0", ["registry", "list", "--license", "cc-by-nc-4.0"]),
        ("list --json --limit 100", ["registry", "list", "--json", "--limit", "100"]),
        ("list", ["registry", "list"]),
        ("list --json (every version)", ["registry", "list", "--json"]),
    ]


def timed(args: list[str], env: dict[str, str]) -> float | str:
    """Seconds the command took, or why it failed (its exit code and last line)."""
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "zoo", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        cwd=NEUTRAL,  # `python -m` looks in the current folder first: PYTHONPATH decides
    )
    took = time.perf_counter() - start
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return f"exit {done.returncode} after {took:.1f} s: {last[:300]}"
    return took


def _median(runs: list[float | str]) -> float | str:
    """The median of the runs, or the first failure when any run failed."""
    failed = [r for r in runs if isinstance(r, str)]
    return failed[0] if failed else statistics.median(r for r in runs if isinstance(r, float))


def _cell(t: float | str) -> str:
    return f"{t:6.2f} s" if isinstance(t, float) else "failed"


def zoo_of(env: dict[str, str]) -> str:
    """Which zoo a timed command imports (PYTHONPATH decides)."""
    code = "import zoo; print(zoo.__file__)"
    where = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=NEUTRAL
    )
    return str(Path(where.stdout.strip()).parent.parent)


def measure(
    backend: str, store_env: dict[str, str], s: dict[str, str], repeat: int, trees: dict[str, str]
) -> dict[str, dict[str, float | str]]:
    """Median seconds per command and zoo tree (``trees``: column -> PYTHONPATH, "" for
    the environment's own). One tree after the other, not alternated: a command the
    server gives up on (the client's timeout) keeps its one worker busy after the client
    has gone, which would slow the other tree's next command."""
    base = {k: v for k, v in os.environ.items() if k not in {"ZOO_HOME", "MLFLOW_TRACKING_URI"}}
    base.update(CI="true", COLUMNS="160", **store_env)
    out: dict[str, dict[str, float | str]] = {col: {} for col in trees}
    for col, path in trees.items():
        env = {**base, **({"PYTHONPATH": path} if path else {})}
        print(f"  {backend}, {col}: zoo from {zoo_of(env)}", file=sys.stderr, flush=True)
        for label, args in commands(s):
            timed(args, env)  # warm: imports compiled, pages cached
            out[col][label] = _median([timed(args, env) for _ in range(repeat)])
            print(
                f"  {backend:8s} {col:6s} zoo {' '.join(args):60s} {_cell(out[col][label])}",
                file=sys.stderr,
                flush=True,
            )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--versions", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument(
        "--store-dir",
        type=Path,
        default=Path(os.environ.get("TMPDIR", "/tmp")) / "zoo-registry-scale",
        help="where the SQLite store (and the server's files) are kept between runs",
    )
    parser.add_argument(
        "--keep-db", action="store_true", help="keep (and reuse) the PostgreSQL database"
    )
    parser.add_argument(
        "--before",
        metavar="PATH",
        help="another zoo source tree (its PYTHONPATH) timed after this one, on the same store",
    )
    opts = parser.parse_args()
    os.environ.setdefault("CI", "true")
    sys.path.insert(0, str(ROOT))
    backends = [b.strip() for b in opts.backends.split(",") if b.strip()]
    trees = {"now": ""} | ({"before": opts.before} if opts.before else {})
    s = subjects(opts.versions)
    results: dict[str, dict[str, dict[str, float | str]]] = {}
    for backend in backends:
        if backend == "sqlite":
            store = sqlite_store(opts.store_dir, opts.versions)
            results[backend] = measure(backend, store, s, opts.repeat, trees)
        elif backend == "postgres":
            pg = PgStore(opts.store_dir, opts.versions, opts.keep_db)
            try:
                results[backend] = measure(backend, pg.env, s, opts.repeat, trees)
            finally:
                pg.close()
        else:
            raise SystemExit(f"unknown backend {backend}: sqlite or postgres")
    from _common import git_commit

    commit, dirty = git_commit(ROOT)
    cmd = (
        f"python bench/registry_scale.py --versions {opts.versions} --repeat {opts.repeat} "
        f"--backends {','.join(backends)} --store-dir {opts.store_dir}"
        + (" --keep-db" if opts.keep_db else "")
        + (f" --before {opts.before}" if opts.before else "")
    )
    print(f"command: {cmd}")
    print(
        f"bench commit: {commit[:10]}{' (uncommitted changes)' if dirty else ''}; {opts.versions} "
        f"versions of {len(set(i['name'] for i in plan(opts.versions)))} models; "
        f"median of {opts.repeat} warm runs, each a whole process"
    )
    env = dict(os.environ)
    for col, path in trees.items():
        print(f"zoo {col}: {zoo_of({**env, **({'PYTHONPATH': path} if path else {})})}")
    columns = [(b, col) for b in backends for col in trees]
    print(f"{'zoo registry ...':48s}" + "".join(f"{b + ' ' + col:>16s}" for b, col in columns))
    failures = []
    for label, _ in commands(s):
        cells = ""
        for b, col in columns:
            t = results[b][col][label]
            if isinstance(t, str):
                failures.append(f"{b} {col}: zoo registry {label}: {t}")
                cells += f"{'failed':>15s}! "
            else:
                cells += f"{t:13.2f} s{'' if t < GOALS[b] else '!':1s} "
        print(f"{label:48s}{cells}")
    goals = ", ".join(f"{GOALS[b]:.0f} s on {b}" for b in backends)
    print(f"goal: under {goals} ('!': missed)")
    for line in failures:
        print(f"failed: {line}")


if __name__ == "__main__":
    main()
