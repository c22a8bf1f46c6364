"""The catalogue through the real CLI: timm and torchvision indexes, info, errors, caching."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from clihelp import EXAMPLE_PLUGINS, run_zoo


@pytest.fixture(scope="module")
def catalog_home(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """One zoo home whose catalogue index is built once for this module's tests."""
    home = tmp_path_factory.mktemp("catalog-home")
    env = {"ZOO_HOME": str(home)}
    built = run_zoo("list", "resnet18*", "--json", env=env)
    assert built.returncode == 0, built.stderr
    return env


def _run_noting_heavy_imports(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """``zoo ARGS`` in a fresh interpreter; stderr ends with ``HEAVY [modules] rc``: which
    of torch, timm, torchvision, mlflow the command imported, and its exit code."""
    code = (
        "import sys\n"
        "from zoo.cli import run\n"
        f"rc = run({list(args)!r})\n"
        "heavy = [m for m in ('torch', 'timm', 'torchvision', 'mlflow') if m in sys.modules]\n"
        "print('HEAVY', heavy, rc, file=sys.stderr)\n"
    )
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**__import__("os").environ, **env},
        timeout=120,
    )


def _list(env: dict[str, str], *args: str) -> list[dict]:
    result = run_zoo("list", *args, "--json", env=env)
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["schema_version"] == 1 and doc["kind"] == "model_list"
    assert doc["count"] == len(doc["models"])
    return doc["models"]


def test_list_resnet50_has_timm_and_torchvision_entries(catalog_home: dict[str, str]) -> None:
    models = _list(catalog_home, "resnet50*")
    providers = {m["provider"] for m in models}
    assert {"timm", "torchvision"} <= providers
    refs = {m["reference"] for m in models}
    assert "timm:resnet50.a1_in1k" in refs
    assert "torchvision:resnet50.IMAGENET1K_V2" in refs
    for m in models:
        assert m["reference"].startswith(m["provider"] + ":")
        assert m["license"] and m["license"] == m["license"].lower()
        if m["pretrained"]:
            assert m["source"], m


def test_swsl_weights_are_non_commercial(catalog_home: dict[str, str]) -> None:
    models = _list(catalog_home, "resnet50*swsl*")
    assert [m["reference"] for m in models] == ["timm:resnet50.fb_swsl_ig1b_ft_in1k"]
    assert models[0]["license"] == "cc-by-nc-4.0"


def test_list_filters_by_licence_and_pretrained(catalog_home: dict[str, str]) -> None:
    nc = _list(catalog_home, "resnet*", "--license", "cc-by-nc-4.0")
    assert nc and all(m["license"] == "cc-by-nc-4.0" for m in nc)
    pretrained = _list(catalog_home, "resnet50*", "--pretrained")
    everything = _list(catalog_home, "resnet50*")
    assert all(m["pretrained"] for m in pretrained)
    assert len(pretrained) < len(everything)  # timm lists architectures without weights too


def test_torchvision_licences_are_what_torchvision_states(catalog_home: dict[str, str]) -> None:
    """SWAG weights name their licence in their metadata; the others are published with
    torchvision's BSD-3-Clause repository, as its docs state (never a guess)."""
    swag = _list(catalog_home, "vit_b_16.IMAGENET1K_SWAG*")
    assert swag and all(m["license"] == "cc-by-nc-4.0" for m in swag)
    assert all("facebookresearch/SWAG" in m["license_url"] for m in swag)
    assert all(m["license_source"] == "torchvision's weights metadata" for m in swag)
    plain = _list(catalog_home, "torchvision:resnet50.IMAGENET1K_V2")
    assert plain[0]["license"] == "bsd-3-clause"
    assert plain[0]["license_url"] == "https://github.com/pytorch/vision/blob/main/LICENSE"
    assert "torchvision" in plain[0]["license_source"]


def test_torchvision_weights_and_their_timm_twins_report_one_licence(
    catalog_home: dict[str, str],
) -> None:
    """The same file (one download URL) served by two providers reports one licence,
    with one licence URL; none of torchvision's weights is `unknown`."""
    import timm
    from torchvision import models

    tv = {m["source"]: m for m in _list(catalog_home, "torchvision:*")}
    assert len(tv) > 100
    for m in tv.values():
        assert m["license"] != "unknown" and m["license_source"] and m["license_url"], m
    stated = {
        w.url: w.meta.get("license")
        for a in models.list_models(module=models)
        for w in models.get_model_weights(a)
    }
    for url, lic_url in stated.items():  # torchvision's own metadata agrees where it speaks
        if lic_url:
            assert tv[url]["license_url"] == lic_url
    timm_rows = {m["reference"]: m for m in _list(catalog_home, "timm:*", "--pretrained")}
    twins = 0
    for name in timm.list_models(pretrained=True):
        url = timm.models.get_pretrained_cfg(name).url
        if url in tv:
            twin, own = timm_rows[f"timm:{name}"], tv[url]
            assert (twin["license"], twin["license_url"]) == (
                own["license"],
                own["license_url"],
            ), (name, own["reference"])
            twins += 1
    assert twins >= 30  # resnets, resnexts, wide resnets, regnets (SWAG ones included)
    for ref in ("timm:resnet50.tv_in1k", "timm:densenet121.tv_in1k"):  # tv copies, any URL
        assert timm_rows[ref]["license"] == "bsd-3-clause"


def test_info_gives_input_config_and_licence(catalog_home: dict[str, str]) -> None:
    result = run_zoo("info", "timm:resnet50.a1_in1k", "--json", env=catalog_home)
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    model = doc["model"]
    assert doc["schema_version"] == 1
    assert model["license"] == "apache-2.0"
    assert model["input_size"] == [3, 224, 224]
    assert model["mean"] == [0.485, 0.456, 0.406]
    assert model["interpolation"] == "bicubic"
    assert model["crop_pct"] == 0.95
    assert model["source"] == "https://huggingface.co/timm/resnet50.a1_in1k"
    # counted on the meta device: the real ResNet-50 size and feature width
    assert model["num_params"] == 25_557_032
    assert model["feature_dim"] == 2048


def test_info_without_tag_resolves_the_default_weights(catalog_home: dict[str, str]) -> None:
    result = run_zoo("info", "torchvision:resnet50", "--json", env=catalog_home)
    model = json.loads(result.stdout)["model"]
    assert model["reference"] == "torchvision:resnet50.IMAGENET1K_V2"
    assert model["feature_dim"] == 2048 and model["num_params"] == 25_557_032


def test_info_near_miss_exits_3_naming_the_right_tag(catalog_home: dict[str, str]) -> None:
    result = run_zoo("info", "timm:resnet50.a1_in1", env=catalog_home)
    assert result.returncode == 3
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "did you mean timm:resnet50.a1_in1k " in lines[0]
    assert "Traceback" not in result.stderr


def test_info_near_miss_suggests_the_obvious_architecture_first(
    catalog_home: dict[str, str],
) -> None:
    result = run_zoo("info", "timm:resnet5", env=catalog_home)
    assert result.returncode == 3
    assert "did you mean timm:resnet50 or" in result.stderr, result.stderr


def test_warm_info_answers_from_the_catalogue_without_timm_or_torch(
    catalog_home: dict[str, str],
) -> None:
    """The first `zoo info` of a reference asks timm (sizes, stages on the meta device);
    asking again is answered from what the catalogue kept, importing neither."""
    first = run_zoo("info", "timm:resnet18.a1_in1k", "--json", env=catalog_home)
    assert first.returncode == 0, first.stderr
    result = _run_noting_heavy_imports(catalog_home, "info", "timm:resnet18.a1_in1k", "--json")
    assert "HEAVY [] 0" in result.stderr, result.stderr
    assert json.loads(result.stdout) == json.loads(first.stdout)
    assert json.loads(result.stdout)["stages"][-1] == "head"


def test_info_unknown_exits_3_pointing_to_zoo_list(catalog_home: dict[str, str]) -> None:
    result = run_zoo("info", "timm:nonexistent", env=catalog_home)
    assert result.returncode == 3
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "zoo list" in lines[0]


def test_bad_reference_exits_2_with_the_forms(catalog_home: dict[str, str]) -> None:
    result = run_zoo("info", "hf:a/b/c", env=catalog_home)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "hf:ORG/REPO" in result.stderr


def test_unknown_provider_and_bare_name_exit_3(catalog_home: dict[str, str]) -> None:
    assert run_zoo("info", "nosuch:model", env=catalog_home).returncode == 3
    bare = run_zoo("info", "no-such-model", env=catalog_home)
    assert bare.returncode == 3 and "zoo list" in bare.stderr


# The fields an entry of the catalogue may carry (torchvision's test_schema_meta_validation
# checks its weights' meta against an allowed set the same way).
SCHEMA = {
    "reference",
    "provider",
    "architecture",
    "tag",
    "license",
    "license_url",
    "license_source",
    "source",
    "pretrained",
    "pretrained_dataset",
    "imagenet_top1",
    "input_size",
    "mean",
    "std",
    "interpolation",
    "crop_pct",
    "num_classes",
    "num_params",
    "feature_dim",
}
FIRST_PARTY = {"timm", "torchvision", "hf", "local"}
# What every pretrained entry must state, whatever its provider.
REQUIRED = (
    "license",
    "license_source",
    "source",
    "input_size",
    "mean",
    "std",
    "interpolation",
    "crop_pct",
)


def test_catalogue_entries_are_well_formed(catalog_home: dict[str, str]) -> None:
    """Like torchvision's schema test: every entry has a known licence, and every
    pretrained one a source and an input config; `zoo list` shows no column that is
    empty for a whole provider."""
    from zoo.cli.catalog import LIST_COLUMNS
    from zoo.contract.types import BackboneInfo
    from zoo.licenses.ids import license_kind, normalize_license

    models = _list(catalog_home)
    assert len(models) > 2000
    by_provider: dict[str, list[dict]] = {}
    for m in models:
        assert set(m) == SCHEMA, m["reference"]
        by_provider.setdefault(m["provider"], []).append(m)
        lic = m["license"]
        assert isinstance(lic, str) and lic and lic == normalize_license(lic), m
        license_kind(lic)  # a kind the compatibility table has a rule for
        if m["pretrained"]:
            # third-party plugins (effnet-lite) need not say where their licence comes from
            required = REQUIRED if m["provider"] in FIRST_PARTY else REQUIRED[:1] + REQUIRED[2:]
            missing = [k for k in required if m[k] in (None, "", [])]
            assert not missing, (m["reference"], missing)
            assert len(m["input_size"]) == 3 and len(m["mean"]) == len(m["std"]) == 3
    assert {"timm", "torchvision"} <= set(by_provider)
    for provider, rows in by_provider.items():
        infos = [BackboneInfo.from_dict(r) for r in rows]
        for column, cell in LIST_COLUMNS:
            assert any(cell(i) for i in infos), f"column {column} is empty for {provider}"
        for key in ("license_url", "pretrained_dataset", "input_size", "source"):
            assert any(r[key] for r in rows), f"{key} is empty for every {provider} entry"


def test_torchvision_param_counts_match_the_real_models(catalog_home: dict[str, str]) -> None:
    import torchvision

    for arch in ("resnet18", "mobilenet_v3_small"):
        entry = _list(catalog_home, f"torchvision:{arch}.IMAGENET1K_V1")[0]
        model = torchvision.models.get_model(arch, weights=None)
        assert entry["num_params"] == sum(p.numel() for p in model.parameters())


def test_index_is_rebuilt_when_the_provider_version_changes(catalog_home: dict[str, str]) -> None:
    index = Path(catalog_home["ZOO_HOME"]) / "catalog" / "timm.jsonl"
    header, *entries = index.read_text().splitlines()
    data = json.loads(header)
    real_version = data["provider_version"]
    data["provider_version"] = "0.0.0-recorded-by-an-older-timm"
    data["references"] = data["references"][:1]
    index.write_text("\n".join([json.dumps(data), entries[0]]) + "\n")
    models = _list(catalog_home, "resnet50*")
    assert "timm:resnet50.a1_in1k" in {m["reference"] for m in models}
    header, *entries = index.read_text().splitlines()
    rebuilt = json.loads(header)
    assert rebuilt["provider_version"] == real_version
    assert len(rebuilt["references"]) == len(entries) > 1000
    assert [json.loads(e)["reference"] for e in entries] == rebuilt["references"]


def test_index_is_reused_while_the_version_is_unchanged(tmp_path: Path) -> None:
    log = tmp_path / "index.log"
    env = {
        "ZOO_HOME": str(tmp_path / "home"),
        "ZOO_EXAMPLE_INDEX_LOG": str(log),
        "ZOO_LOAD_PLUGINS": "example",
    }
    for _ in range(2):
        assert run_zoo("list", env=env, plugin_paths=[EXAMPLE_PLUGINS]).returncode == 0
    assert log.read_text().count("built") == 1
    env["ZOO_EXAMPLE_VERSION"] = "2.0"
    assert run_zoo("list", env=env, plugin_paths=[EXAMPLE_PLUGINS]).returncode == 0
    assert log.read_text().count("built") == 2


def test_a_cold_index_says_it_is_being_built_and_a_warm_one_says_nothing(tmp_path: Path) -> None:
    """The first `zoo list` builds every provider's index (timm's takes half a minute):
    it says so on stderr, with the providers; a version change says it again; a warm
    list prints no such line."""
    env = {"ZOO_HOME": str(tmp_path / "home"), "ZOO_LOAD_PLUGINS": "example", "CI": "true"}
    cold = run_zoo("list", "--json", env=env, plugin_paths=[EXAMPLE_PLUGINS])
    assert cold.returncode == 0, cold.stderr
    assert cold.stderr.splitlines()[0] == (
        "zoo: building the catalogue index (first run): 1 provider (example)"
    )
    assert "zoo: building the catalogue index (first run): done" in cold.stderr
    assert json.loads(cold.stdout)["count"] == 2  # stdout is the listing alone
    warm = run_zoo("list", env=env, plugin_paths=[EXAMPLE_PLUGINS])
    assert warm.returncode == 0 and warm.stderr == "", warm.stderr
    changed = run_zoo(
        "list", env={**env, "ZOO_EXAMPLE_VERSION": "2.0"}, plugin_paths=[EXAMPLE_PLUGINS]
    )
    assert "building the catalogue index (new or updated providers)" in changed.stderr


def _on_a_terminal(args: list[str], env: dict[str, str]) -> str:
    """``zoo ARGS`` with stdin, stdout and stderr on a pty (CI unset): what it wrote."""
    import os
    import pty
    import select

    full = {k: v for k, v in os.environ.items() if k != "CI"}
    full.update(env, COLUMNS="120")
    full["PYTHONPATH"] = os.pathsep.join([str(EXAMPLE_PLUGINS), full.get("PYTHONPATH", "")])
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "zoo", *args], env=full, stdin=slave, stdout=slave, stderr=slave
    )
    os.close(slave)
    chunks = []
    while select.select([master], [], [], 120)[0]:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # the other end closed
            break
        if not chunk:
            break
        chunks.append(chunk)
    proc.wait(timeout=120)
    os.close(master)
    text = b"".join(chunks).decode("utf-8", "replace")
    assert proc.returncode == 0, text
    return text


def test_on_a_terminal_a_cold_index_shows_a_status_line_and_a_warm_one_none(
    tmp_path: Path,
) -> None:
    env = {"ZOO_HOME": str(tmp_path / "home"), "ZOO_LOAD_PLUGINS": "example"}
    cold = _on_a_terminal(["list"], env)
    assert "building the catalogue index (first run): " in cold
    assert "zoo: building" not in cold  # rich's status line, not the plain lines
    assert "example:tiny.v1" in cold
    warm = _on_a_terminal(["list"], env)
    assert "catalogue index" not in warm and "example:tiny.v1" in warm


def test_warm_list_imports_no_timm_or_torch(catalog_home: dict[str, str]) -> None:
    result = _run_noting_heavy_imports(catalog_home, "list", "resnet50*", "--json")
    assert "HEAVY [] 0" in result.stderr, result.stderr


def test_zoo_writes_nothing_in_the_current_directory(
    tmp_path: Path, catalog_home: dict[str, str]
) -> None:
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    import os

    result = subprocess.run(
        [sys.executable, "-m", "zoo", "list", "efficientnet*", "--json"],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "ZOO_HOME": str(tmp_path / "home")},
    )
    assert result.returncode == 0, result.stderr
    assert list(cwd.iterdir()) == []
    assert (tmp_path / "home" / "catalog" / "timm.jsonl").exists()


def test_hub_is_contacted_only_when_asked_and_offline_says_so_in_one_line(
    catalog_home: dict[str, str],
) -> None:
    # without --provider hf, no hub request is made: a dead endpoint changes nothing
    quiet = run_zoo("list", "resnet18*", env={**catalog_home, "HF_ENDPOINT": "http://127.0.0.1:9"})
    assert quiet.returncode == 0 and quiet.stderr == ""
    offline = run_zoo(
        "list",
        "vit*",
        "--provider",
        "hf",
        "--timeout",
        "2",
        "--json",
        env={**catalog_home, "HF_ENDPOINT": "http://127.0.0.1:9"},
    )
    assert offline.returncode == 0
    lines = offline.stderr.strip().splitlines()
    assert len(lines) == 1 and "Hugging Face Hub" in lines[0] and "local cache" in lines[0]
    assert json.loads(offline.stdout)["notes"]


def test_a_listing_prints_aligned_columns_and_parses_only_the_lines_it_matches(
    tmp_path: Path,
) -> None:
    """`zoo list` prints plain columns under a rule (greppable, never wrapped); the index
    is JSON Lines whose header names every reference, and a pattern is matched there: a
    line whose reference does not match is never parsed (here it is not even JSON), so
    the index is neither refused nor rebuilt."""
    log = tmp_path / "index.log"
    env = {
        "ZOO_HOME": str(tmp_path / "home"),
        "ZOO_EXAMPLE_INDEX_LOG": str(log),
        "ZOO_LOAD_PLUGINS": "example",
    }
    built = run_zoo("list", env=env, plugin_paths=[EXAMPLE_PLUGINS])
    assert built.returncode == 0, built.stderr
    assert built.stdout.splitlines() == [
        "reference        licence       dataset  input  source",
        "---------------  ------------  -------  -----  -------------------------------",
        "example:tiny.v1  mit                    32x32  https://example.invalid/tiny-v1",
        "example:tiny.v2  cc-by-nc-4.0           32x32  https://example.invalid/tiny-v2",
        "2 models",
    ]
    index = tmp_path / "home" / "catalog" / "example.jsonl"
    header, first, _second = index.read_text().splitlines()
    assert json.loads(header)["references"] == ["example:tiny.v1", "example:tiny.v2"]
    index.write_text("\n".join([header, first, "not json: never parsed"]) + "\n")
    one = run_zoo("list", "*v1", env=env, plugin_paths=[EXAMPLE_PLUGINS])
    assert one.returncode == 0, one.stderr
    assert one.stdout.splitlines()[2:] == [
        "example:tiny.v1  mit               32x32  https://example.invalid/tiny-v1",
        "1 model",
    ]
    assert log.read_text().count("built") == 1  # read, not rebuilt
    # the unparsed line is read as soon as a listing needs it: an unreadable index is rebuilt
    both = run_zoo("list", "--json", env=env, plugin_paths=[EXAMPLE_PLUGINS])
    assert json.loads(both.stdout)["count"] == 2 and log.read_text().count("built") == 2
