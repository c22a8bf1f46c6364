"""The whole tree where users look (issue 25): version descriptions that name the base,
the licence chain and headline metrics and list the version's children; the
``lineage.svg`` artifact of a version's ancestors (a DAG for several parents);
``zoo registry lineage --format svg|dot|mermaid``; lineage by catalogue reference.

One module-scoped store: a chain ``local:tiny-base -> p/1 -> p/2 -> q/1`` (two model
names), a version of two parents, and a small chain of its own for the exact outputs.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_ui import _tiny_model

from zoo.cli import run

BASE = "local:tiny-base"
COMMON: dict[str, Any] = {
    "strategy": "linear-probe",
    "strategy_settings": {"epochs": 1},
    "dataset": {"digest": "sha256:" + "ab" * 32, "classes": ["a", "b"]},
    "metrics": {"val_accuracy": 0.5, "test_accuracy": 0.75, "train_loss": 0.3},
    "preprocessing": {"input_size": [3, 16, 16]},
    "class_names": ["a", "b"],
}


def _register(name: str, **kwargs: Any) -> Any:
    import torch

    from zoo import registry

    return registry.register_derivative(
        _tiny_model(), name=name, input_example=torch.zeros(2, 3, 16, 16), **COMMON, **kwargs
    )


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    from zoo.contract.plugins import reset_plugin_manager
    from zoo.registry.lineage import Pin

    mp = pytest.MonkeyPatch()
    home = tmp_path_factory.mktemp("zoo-home")
    mp.setenv("ZOO_HOME", str(home))
    mp.delenv("MLFLOW_TRACKING_URI", raising=False)
    reset_plugin_manager()
    p1 = _register("p", parent=BASE, parent_sha256="cd" * 32, parent_license="cc-by-nc-4.0")
    p2 = _register("p", parent=p1.model_uri)
    q1 = _register("q", parent=p2.model_uri)
    combo = _register(
        "combo",
        parents=[
            Pin(BASE, "cd" * 32, "cc-by-nc-4.0"),
            Pin("local:other-base", "ef" * 32, "cc-by-nc-4.0"),
        ],
    )
    d1 = _register("d", parent="local:dot-base", parent_sha256="12" * 32, parent_license="mit")
    d2 = _register("d", parent=d1.model_uri)
    f1 = _register("f", parent="local:fault-base", parent_sha256="34" * 32, parent_license="mit")
    yield {"home": home, "p1": p1, "p2": p2, "q1": q1, "combo": combo, "d2": d2, "f1": f1}
    mp.undo()


@pytest.fixture
def same_home(store: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZOO_HOME", str(store["home"]))


def _now(uri: str) -> Any:
    from zoo.registry import get_version

    return get_version(uri)


def test_description_names_base_licence_chain_and_headline_metrics(store, same_home) -> None:
    q1 = _now(store["q1"].model_uri)
    text = q1.description
    assert "base `local:tiny-base`" in text and "| Base model | `local:tiny-base` |" in text
    chain = next(line for line in text.splitlines() if line.startswith("| Licence chain |"))
    # every ancestor with its licence, roots first, then the version itself
    order = [BASE, "models:/p/1", "models:/p/2", "this version"]
    places = [chain.index(item) for item in order]
    assert places == sorted(places), chain
    assert chain.count("cc-by-nc-4.0") == 4
    assert "test_accuracy **0.75** · val_accuracy **0.5**" in text  # the headline
    assert "train_loss **" not in text  # not a headline figure (still in the table)
    assert "train_loss 0.3" in text


def test_registering_a_child_lists_it_in_the_parents_description(store, same_home) -> None:
    from zoo.registry.describe import CHILDREN_HEADING

    at_registration = store["p2"].description  # before q/1 was registered under it
    assert CHILDREN_HEADING not in at_registration
    now = _now(store["p2"].model_uri).description
    head, _, children = now.partition(CHILDREN_HEADING)
    assert head.rstrip() == at_registration.rstrip()  # what registration wrote is kept
    assert "[models:/q/1](#/models/q/versions/1)" in children
    assert "test_accuracy 0.75" in children
    # the root version lists its child too; a multi-parent version is listed nowhere else
    p1_children = _now(store["p1"].model_uri).description.partition(CHILDREN_HEADING)[2]
    assert "[models:/p/2](#/models/p/versions/2)" in p1_children
    assert "models:/q/1" not in p1_children


def test_a_failed_description_update_keeps_the_child_and_the_next_child_repairs_it(
    store, same_home, capsys, monkeypatch
) -> None:
    """Fault injection into zoo's own step (MLflow's failure is what it stands for)."""
    import zoo.registry.describe as describe

    def refuse(mc: Any, parent_uri: str) -> None:
        raise RuntimeError("the store refused the update")

    monkeypatch.setattr(describe, "_refresh", refuse)
    child = _register("late", parent=store["f1"].model_uri)
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"zoo: warning: {child.model_uri} is registered, but {store['f1'].model_uri}'s "
        "description does not list it yet (the store refused the update); the next "
        f"version registered under {store['f1'].model_uri} lists it"
    ]
    assert _now(child.model_uri).version == child.version  # the registration stands
    assert child.model_uri not in _now(store["f1"].model_uri).description
    monkeypatch.undo()
    monkeypatch.setenv("ZOO_HOME", str(store["home"]))
    sibling = _register("late", parent=store["f1"].model_uri)
    text = _now(store["f1"].model_uri).description
    assert child.model_uri in text and sibling.model_uri in text


def _svg_texts(data: bytes) -> list[str]:
    root = ET.fromstring(data)
    return [t.text or "" for t in root.iter("{http://www.w3.org/2000/svg}text")]


def test_lineage_svg_of_a_multi_parent_version_shows_both_parents(
    store, same_home, tmp_path
) -> None:
    from zoo.registry.picture import SVG_FILE, ancestors_graph, lineage_svg
    from zoo.registry.read import download_artifact, get_version

    combo = _now(store["combo"].model_uri)
    got = download_artifact(combo, SVG_FILE, tmp_path).read_bytes()
    texts = _svg_texts(got)
    for line in (BASE, "local:other-base", "combo (this version)", "licence cc-by-nc-4.0"):
        assert line in texts, texts
    graph = ancestors_graph(combo.lineage, label="combo (this version)", get_version=get_version)
    assert sorted(graph.edges) == [
        ("local:other-base", "combo (this version)"),
        (BASE, "combo (this version)"),
    ]
    # deterministic: the same lineage draws the same bytes
    assert lineage_svg(combo.lineage, name="combo", get_version=get_version) == got


def test_grandchild_svg_draws_every_ancestor_in_order(store, same_home, tmp_path) -> None:
    from zoo.registry.picture import SVG_FILE
    from zoo.registry.read import download_artifact

    texts = _svg_texts(download_artifact(_now("models:/q/1"), SVG_FILE, tmp_path).read_bytes())
    names = [t for t in texts if t.startswith(("local:", "models:/", "q "))]
    assert names == [BASE, "models:/p/1", "models:/p/2", "q (this version)"]
    assert "strategy linear-probe" in texts


DOT = """digraph lineage {
  rankdir=TB;
  node [shape=box, style="rounded,filled"];
  "local:dot-base" [label="local:dot-base\\nlicence mit", fillcolor="#e8e8e8"];
  "models:/d/1" [label="models:/d/1\\nlicence mit\\nstrategy linear-probe", fillcolor="#d6e6f5"];
  "models:/d/2" [label="models:/d/2\\nlicence mit\\nstrategy linear-probe", fillcolor="#d6e6f5"];
  "local:dot-base" -> "models:/d/1";
  "models:/d/1" -> "models:/d/2";
}
"""

MERMAID = """flowchart TD
  n0["local:dot-base<br/>licence mit"]
  n1["models:/d/1<br/>licence mit<br/>strategy linear-probe"]
  n2["models:/d/2<br/>licence mit<br/>strategy linear-probe"]
  n0 --> n1
  n1 --> n2
"""


def test_dot_and_mermaid_are_exact_for_a_small_chain(store, same_home, capsys) -> None:
    assert run(["registry", "lineage", "d", "--format", "dot"]) == 0
    assert capsys.readouterr().out == DOT
    assert run(["registry", "lineage", "local:dot-base", "--format", "mermaid"]) == 0
    assert capsys.readouterr().out == MERMAID


def test_svg_to_a_file_and_to_stdout(store, same_home, tmp_path, capsys) -> None:
    target = tmp_path / "tree.svg"
    assert run(["registry", "lineage", "p", "--format", "svg", "-o", str(target)]) == 0
    captured = capsys.readouterr()
    assert captured.out == "" and f"to {target} (svg)" in captured.err
    texts = _svg_texts(target.read_bytes())
    assert {"models:/p/1", "models:/p/2", "models:/q/1", "models:/combo/1"} <= set(texts)
    assert "Lineage of p" in texts
    assert run(["registry", "lineage", "p", "--format", "svg"]) == 0
    assert capsys.readouterr().out.encode() == target.read_bytes()


def test_lineage_by_catalogue_reference_lists_derivatives_across_model_names(
    store, same_home, capsys
) -> None:
    import json

    assert run(["registry", "lineage", BASE, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    (root,) = doc["roots"]
    assert root["reference"] == BASE and root["license"] == "cc-by-nc-4.0"

    def uris(node: dict[str, Any]) -> list[str]:
        return [node["reference"]] + [u for c in node["children"] for u in uris(c)]

    assert sorted(uris(root)[1:]) == [
        "models:/combo/1",
        "models:/p/1",
        "models:/p/2",
        "models:/q/1",
    ]
    assert run(["registry", "lineage", BASE]) == 0
    text = capsys.readouterr().out
    assert "models:/q/1" in text and "models:/combo/1" in text and "models:/d/" not in text


def test_a_reference_nothing_derives_from_is_one_line(store, same_home, capsys) -> None:
    assert run(["registry", "lineage", "local:nobody-used-this"]) == 0
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == "zoo: no registered version derives from local:nobody-used-this\n"


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["p", "--json", "--format", "dot"], "--json and --format dot are two outputs"),
        (["p", "-o", "x.svg"], "--output writes a picture"),
        (["models:/p/1"], "give its model name (zoo registry lineage p)"),
    ],
)
def test_bad_lineage_requests_are_one_line(store, same_home, capsys, argv, says) -> None:
    assert run(["registry", "lineage", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and says in err[0]


def test_no_file_is_left_by_a_refused_output(store, same_home, tmp_path: Path) -> None:
    target = tmp_path / "x.svg"
    assert run(["registry", "lineage", "nobody", "--format", "svg", "-o", str(target)]) != 0
    assert not target.exists()
