"""Licences: the compatibility table row by row (docs/licenses.md shows the same table),
SPDX ids, and the decision along a whole chain of registered versions."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.finetune_helpers import make_images
from zoo.contract.errors import EXIT_LICENSE, EXIT_USAGE, LicenseError, UsageError
from zoo.licenses.compat import (
    COMPATIBILITY,
    Ancestor,
    check_compatible,
    decide_license,
    is_compatible,
)
from zoo.licenses.ids import KNOWN_CUSTOM, license_kind, normalize_license, parse_license

# (parent, declared derivative licence, allowed?) -- every row of the table, each kind of
# parent against each kind of derivative.
ROWS = [
    # permissive parent: any licence
    ("apache-2.0", "apache-2.0", True),
    ("apache-2.0", "mit", True),
    ("mit", "cc-by-nc-4.0", True),
    ("bsd-3-clause", "cc-by-sa-4.0", True),
    ("cc-by-4.0", "my-company-eula", True),
    ("apache-2.0", "unknown", True),
    # non-commercial parent: itself only
    ("cc-by-nc-4.0", "cc-by-nc-4.0", True),
    ("cc-by-nc-4.0", "apache-2.0", False),
    ("cc-by-nc-4.0", "cc-by-nc-sa-4.0", False),
    ("cc-by-nc-4.0", "unknown", False),
    ("cc-by-nc-sa-4.0", "cc-by-nc-4.0", False),
    ("cc-by-nc-2.0", "cc-by-nc-4.0", False),
    # share-alike parent: itself only
    ("cc-by-sa-4.0", "cc-by-sa-4.0", True),
    ("cc-by-sa-4.0", "mit", False),
    ("gpl-3.0", "apache-2.0", False),
    # custom licence: itself only
    ("dinov3-license", "dinov3-license", True),
    ("dinov3-license", "apache-2.0", False),
    ("apple-ascl", "dinov3-license", False),
    ("llama3", "mit", False),
    # no-derivatives parent: nothing, not even itself
    ("cc-by-nd-4.0", "cc-by-nd-4.0", False),
    ("cc-by-nd-4.0", "mit", False),
    ("cc-by-nc-nd-4.0", "cc-by-nc-nd-4.0", False),
    # unknown parent: unknown only
    ("unknown", "unknown", True),
    ("unknown", "apache-2.0", False),
    ("unknown", "cc-by-nc-4.0", False),
]


@pytest.mark.parametrize(("parent", "derivative", "allowed"), ROWS)
def test_compatibility_table_row(parent: str, derivative: str, allowed: bool) -> None:
    assert is_compatible(parent, derivative) is allowed
    if allowed:
        check_compatible(parent, derivative)
    else:
        with pytest.raises(LicenseError) as info:
            check_compatible(parent, derivative)
        message = str(info.value)
        assert "\n" not in message
        assert normalize_license(parent) in message and normalize_license(derivative) in message
        assert "--license-override" in message
        assert info.value.exit_code == EXIT_LICENSE == 5


@pytest.mark.parametrize(
    ("license_id", "kind"),
    [
        ("apache-2.0", "permissive"),
        ("MIT", "permissive"),
        ("cc-by-nc-4.0", "non-commercial"),
        ("cc-by-nc-sa-4.0", "non-commercial"),
        ("cc-by-sa-4.0", "share-alike"),
        ("gpl-3.0", "share-alike"),
        ("cc-by-nd-4.0", "no-derivatives"),
        ("cc-by-nc-nd-4.0", "no-derivatives"),
        ("dinov3-license", "custom"),
        ("apple-ascl", "custom"),
        ("fair-noncommercial-research-license", "non-commercial"),
        ("other", "custom"),
        ("0bsd", "permissive"),  # from the SPDX data's own category
        ("mpl-2.0", "share-alike"),
        ("unknown", "unknown"),
        (None, "unknown"),
    ],
)
def test_license_kinds(license_id: str | None, kind: str) -> None:
    assert license_kind(normalize_license(license_id)) == kind


def test_every_kind_has_a_rule_and_every_rule_is_tested() -> None:
    tested_parent_kinds = {license_kind(parent) for parent, _, _ in ROWS}
    assert tested_parent_kinds == set(COMPATIBILITY)
    for kind, rule in COMPATIBILITY.items():
        rows = [(p, d, ok) for p, d, ok in ROWS if license_kind(p) == kind]
        assert any(not ok for *_, ok in rows) or rule == "any"
        assert any(ok for *_, ok in rows) or rule == "none"


@pytest.mark.parametrize("parent", ["cc-by-nc-4.0", "unknown", "dinov3-license"])
def test_override_with_a_reason_passes_and_an_empty_reason_does_not(parent: str) -> None:
    check_compatible(parent, "apache-2.0", override="internal research use, approved")
    with pytest.raises(LicenseError):
        check_compatible(parent, "apache-2.0", override="  ")


def test_docs_show_the_same_table() -> None:
    doc = (Path(__file__).parents[1] / "docs" / "licenses.md").read_text(encoding="utf-8")
    for kind, rule in COMPATIBILITY.items():
        row = next((line for line in doc.splitlines() if line.startswith(f"| {kind} ")), None)
        assert row is not None, f"docs/licenses.md has no row for {kind}"
        assert ("any licence" in row) == (rule == "any")
        assert ("no derivative" in row) == (rule == "none")


# ------------------------------------------------------------------ licence ids (SPDX)


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("MIT License", "mit"),
        ("MIT", "mit"),
        ("Apache-2.0", "apache-2.0"),
        ("Apache License, Version 2.0", "apache-2.0"),
        ("BSD 3-Clause License", "bsd-3-clause"),
        ("CC-BY-NC-4.0", "cc-by-nc-4.0"),
        ("gpl-3.0", "gpl-3.0"),  # the Hub's form of an SPDX id SPDX now spells GPL-3.0-only
        ("apple-ascl", "apple-ascl"),
        ("fair-noncommercial-research-license", "fair-noncommercial-research-license"),
        ("other", "other"),
        ("custom:acme-eula", "acme-eula"),
    ],
)
def test_declared_ids_are_stored_in_the_hubs_lower_case_form(given: str, stored: str) -> None:
    assert parse_license(given) == stored
    assert normalize_license(given) == stored


def test_a_misspelt_id_is_refused_with_the_nearest_id_first() -> None:
    with pytest.raises(UsageError) as info:
        parse_license("apache-2.O")
    message = str(info.value)
    assert info.value.exit_code == EXIT_USAGE == 2
    assert "did you mean apache-2.0" in message  # the nearest id, first
    assert "custom:NAME" in message and "\n" not in message
    with pytest.raises(UsageError):
        decide_license("mit", "apache-2.O", None)  # the one decision validates too


def test_a_custom_licence_is_accepted_on_purpose_and_restrictive() -> None:
    assert parse_license("custom:acme-eula") == "acme-eula"
    assert license_kind("acme-eula") == "custom"
    assert decide_license("mit", "custom:acme-eula", None) == ("acme-eula", False)
    assert is_compatible("acme-eula", "acme-eula") and not is_compatible("acme-eula", "mit")
    with pytest.raises(LicenseError):
        decide_license("acme-eula", "mit", None)
    with pytest.raises(UsageError, match="known licence id"):
        parse_license("custom:mit")  # not a way round the SPDX list
    with pytest.raises(UsageError):
        parse_license("acme-eula")  # without custom: it is an unknown id


def test_timm_licences_are_all_known() -> None:
    """Every licence timm's pretrained configs state is SPDX or a known custom id."""
    import timm

    stated = {
        getattr(timm.models.get_pretrained_cfg(n), "license", None)
        for n in timm.list_models(pretrained=True)
    }
    for lic in sorted(s for s in stated if s):
        assert parse_license(lic) == lic, lic
    assert "apple-ascl" in KNOWN_CUSTOM


def test_ids_stored_before_spdx_validation_read_as_before() -> None:
    """Old stores hold ids zoo normalised leniently ("mit-license"): they still read, and
    keep their kind (a custom, restrictive licence)."""
    for old in ("mit-license", "my-company-eula", "dinov3-license"):
        assert normalize_license(old) == old
        assert license_kind(old) == "custom"
    assert decide_license("mit-license", None, None) == ("mit-license", True)


# ------------------------------------------------------------------ the whole chain

NC_BASE = Ancestor("timm:vit_x.nc_in1k", "cc-by-nc-4.0")


def test_an_override_covers_only_its_own_version() -> None:
    """base (cc-by-nc-4.0) -> v1 apache-2.0 by override -> v2 declaring mit: refused,
    naming the ancestor and the override."""
    reason = "research use approved by legal"
    v1 = Ancestor("models:/pets/1", "apache-2.0", reason)
    assert decide_license("cc-by-nc-4.0", "apache-2.0", reason, chain=[NC_BASE]) == (
        "apache-2.0",
        False,
    )
    with pytest.raises(LicenseError) as info:
        decide_license("apache-2.0", "mit", None, chain=[NC_BASE, v1])
    message = str(info.value)
    assert "timm:vit_x.nc_in1k" in message and "cc-by-nc-4.0" in message
    assert "models:/pets/1" in message and reason in message
    assert info.value.exit_code == EXIT_LICENSE
    # inheriting v1's licence is refused the same way; the base's own licence is allowed
    with pytest.raises(LicenseError, match="inherited"):
        decide_license("apache-2.0", None, None, chain=[NC_BASE, v1])
    assert decide_license("apache-2.0", "cc-by-nc-4.0", None, chain=[NC_BASE, v1]) == (
        "cc-by-nc-4.0",
        False,
    )
    # a second override, on v2 itself, is a decision of its own
    assert decide_license("apache-2.0", "mit", "again", chain=[NC_BASE, v1])[0] == "mit"


def test_the_nearest_refusing_ancestor_is_named() -> None:
    chain = [Ancestor("timm:a.b", "mit"), Ancestor("models:/m/1", "cc-by-sa-4.0")]
    with pytest.raises(LicenseError, match="models:/m/1"):
        decide_license("cc-by-sa-4.0", "apache-2.0", None, chain=chain)


@pytest.mark.parametrize("base", ["cc-by-nd-4.0", "cc-by-nc-nd-4.0"])
def test_no_derivatives_refuses_fine_tuning_unless_overridden(base: str) -> None:
    chain = [Ancestor("hf:someone/nd-model", base)]
    for declared in (None, base, "mit"):
        with pytest.raises(LicenseError) as info:
            decide_license(base, declared, None, chain=chain)
        assert "no derivatives" in str(info.value) and "--license-override" in str(info.value)
        assert info.value.exit_code == EXIT_LICENSE
    assert decide_license(base, None, "permission granted by the author", chain=chain) == (
        base,
        True,
    )


# ------------------------------------------------------------------ through the registry


def _register(name: str, parent: str, **kw: object) -> object:
    import torch

    from zoo.catalog.index import provider_for
    from zoo.contract.refs import parse_ref
    from zoo.registry import register_derivative

    ref = parse_ref("timm:test_resnet")
    torch.manual_seed(0)
    model = provider_for(ref).build(ref, num_classes=2, pretrained=False).model
    return register_derivative(
        model,
        name=name,
        parent=parent,
        strategy="linear-probe",
        strategy_settings={},
        dataset={"digest": "sha256:0"},
        metrics={"val_accuracy": 0.5},
        input_example=torch.zeros(2, 3, 32, 32),
        preprocessing={
            "input_size": [3, 32, 32],
            "mean": [0.5] * 3,
            "std": [0.5] * 3,
            "interpolation": "bilinear",
            "crop_pct": 1.0,
        },
        class_names=["a", "b"],
        **kw,
    )


@pytest.mark.slow
def test_registry_refuses_a_grandchild_of_an_override_and_reads_an_old_store(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Registered for real: v1 overrides its cc-by-nc-4.0 base to apache-2.0; v2 from v1
    declaring mit is refused naming the base and v1's override. Then v1's lineage is
    rewritten as stores before this change wrote it (no ancestors list): the chain is
    walked instead, and the decision is the same."""
    import json

    from zoo import registry
    from zoo.cli import run
    from zoo.registry.lineage import license_chain
    from zoo.registry.store import client

    base = "timm:test_resnet.r160_in1k"
    reason = "internal evaluation only"
    v1 = _register(
        "chain",
        base,
        parent_license="cc-by-nc-4.0",
        license="apache-2.0",
        license_override=reason,
    )
    assert v1.lineage["license"]["ancestors"] == [
        {"reference": base, "license": "cc-by-nc-4.0", "override": None}
    ]
    with pytest.raises(LicenseError) as info:
        _register("chain", v1.model_uri, license="mit")
    message = str(info.value)
    assert base in message and "cc-by-nc-4.0" in message and reason in message
    assert len(registry.list_versions("chain")) == 1  # nothing half-registered
    # the engine takes the same decision before it reads the data
    data = make_images(tmp_path / "data", classes=2, per_class=4, size=(32, 32))
    capsys.readouterr()
    code = run(["finetune", v1.model_uri, str(data), "--license", "mit", "--image-size", "32"])
    err = capsys.readouterr().err
    assert code == EXIT_LICENSE, err
    assert base in err and reason in err and "checking images" not in err

    old = dict(v1.lineage)
    old["license"] = {k: v for k, v in old["license"].items() if k != "ancestors"}
    client().set_model_version_tag("chain", "1", "zoo.lineage", json.dumps(old))
    walked = license_chain(registry.get_version("models:/chain/1"))
    assert [(a.reference, a.license, a.override) for a in walked] == [
        (base, "cc-by-nc-4.0", None),
        ("models:/chain/1", "apache-2.0", reason),
    ]
    with pytest.raises(LicenseError, match=reason):
        _register("chain", "models:/chain/1", license="mit")
    v2 = _register("chain", "models:/chain/1", license="cc-by-nc-4.0")
    assert v2.license == "cc-by-nc-4.0"
    assert [a["reference"] for a in v2.lineage["license"]["ancestors"]] == [base, "models:/chain/1"]
    code = run(["registry", "show", "models:/chain/1"])  # the old record still shows
    assert code == 0 and "apache-2.0" in capsys.readouterr().out


@pytest.mark.parametrize("nd", ["cc-by-nd-4.0", "cc-by-nc-nd-4.0"])
def test_fine_tuning_a_no_derivatives_base_is_refused_before_the_data_is_read(
    nd: str, tmp_path: Path, zoo_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from safetensors.torch import save_file

    from zoo.catalog.build import build_backbone
    from zoo.cli import run

    weights = tmp_path / "nd.safetensors"
    save_file(build_backbone("timm:test_resnet", pretrained=False).model.state_dict(), str(weights))
    argv = ["import", str(weights), "--arch", "timm:test_resnet", "--license", nd, "--name", "nd"]
    assert run(argv) == 0
    data = make_images(tmp_path / "data", classes=2, per_class=4, size=(32, 32))
    capsys.readouterr()
    code = run(["finetune", "local:nd", str(data), "--image-size", "32"])
    err = capsys.readouterr().err
    assert code == EXIT_LICENSE, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "no derivatives" in lines[0] and nd in lines[0]
    assert "checking images" not in err and not list((zoo_home / "runs").glob("*/state.pt"))


def test_zoo_import_refuses_a_misspelt_licence(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from zoo.cli import run

    weights = tmp_path / "w.safetensors"
    weights.write_bytes(b"not even read")
    argv = ["import", str(weights), "--arch", "timm:test_resnet", "--license", "apache-2.O",
            "--name", "typo"]  # fmt: skip
    assert run(argv) == EXIT_USAGE
    assert "did you mean apache-2.0" in capsys.readouterr().err


def test_several_parents_need_a_licence_every_parent_chain_allows() -> None:
    """A derivative of several parents (a DAG): each parent's chain decides, the nearest
    refusal is named, and parents of different licences leave nothing to inherit."""
    from zoo.licenses.compat import decide_licenses

    mit = ("mit", (Ancestor("timm:a", "mit"),))
    nc = ("cc-by-nc-4.0", (Ancestor("timm:b", "cc-by-nc-4.0"),))
    assert decide_licenses([mit, ("mit", (Ancestor("timm:c", "mit"),))], None, None) == (
        "mit",
        True,
    )
    assert decide_licenses([mit, nc], "cc-by-nc-4.0", None) == ("cc-by-nc-4.0", False)
    with pytest.raises(LicenseError, match="timm:b") as err:
        decide_licenses([mit, nc], "mit", None)
    assert err.value.exit_code == EXIT_LICENSE
    with pytest.raises(LicenseError, match="--license"):
        decide_licenses([mit, nc], None, None)
    assert decide_licenses([mit, nc], "mit", "approved by legal") == ("mit", False)
    with pytest.raises(ValueError, match="at least one parent"):  # not a licence of ""
        decide_licenses([], "mit", None)


@pytest.mark.slow
def test_a_version_of_several_parents_records_each_and_its_children_inherit_the_dag(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Registered for real with two parents: refused when one parent's licence forbids
    the declared one (nothing registered); registered, the lineage pins both parents and
    every ancestor, a child of it is held to both chains, `registry show` lists both
    parents and `registry lineage` prints it under each, marked "also under"."""
    from zoo import registry
    from zoo.cli import run
    from zoo.registry.lineage import Pin

    parents = [
        Pin("timm:test_resnet.r160_in1k", "a" * 64, "mit"),
        Pin("timm:test_efficientnet.r160_in1k", "b" * 64, "cc-by-nc-4.0"),
    ]
    with pytest.raises(LicenseError, match="test_efficientnet"):
        _register("dag", None, parents=parents, license="mit")
    assert not registry.has_model("dag")
    reason = "written permission of the owner"
    v1 = _register("dag", None, parents=parents, license="mit", license_override=reason)
    assert [(p["reference"], p["sha256"], p["license"]) for p in v1.lineage["parents"]] == [
        (p.reference, p.sha256, p.license) for p in parents
    ]
    ancestors = [a["reference"] for a in v1.lineage["license"]["ancestors"]]
    assert ancestors == [p.reference for p in parents]
    # v1's override was its own: a child is held to the nc grandparent of one parent
    with pytest.raises(LicenseError, match="test_efficientnet") as err:
        _register("dag-child", "models:/dag/1", license="apache-2.0")
    assert reason in str(err.value)

    monkeypatch.setenv("COLUMNS", "200")  # one line per node
    capsys.readouterr()
    assert run(["registry", "show", "models:/dag/1"]) == 0
    out = capsys.readouterr().out
    for p in parents:
        assert p.reference in out and p.sha256 in out
    assert run(["registry", "lineage", "dag"]) == 0
    out = capsys.readouterr().out
    roots = [line for line in out.splitlines() if line.startswith("timm:")]
    assert [r.split()[0] for r in roots] == sorted(p.reference for p in parents)
    listed = [line for line in out.splitlines() if "models:/dag/1" in line]
    assert len(listed) == 2, out
    assert "also under timm:test_resnet.r160_in1k" in listed[0]  # under test_efficientnet
    assert "also under timm:test_efficientnet.r160_in1k" in listed[1]


def test_a_record_of_one_parent_written_before_parents_were_a_list_still_reads(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Stores written before this change have `parent` and no `parents`: read as one."""
    import json

    from zoo import registry
    from zoo.cli import run
    from zoo.registry.records import parents_of
    from zoo.registry.store import client

    v1 = _register("single", "timm:test_resnet.r160_in1k", parent_license="mit")
    assert parents_of(v1.lineage) == v1.lineage["parents"] == [v1.lineage["parent"]]
    old = {k: v for k, v in v1.lineage.items() if k != "parents"}
    old["license"] = {k: v for k, v in old["license"].items() if k != "parents"}
    client().set_model_version_tag("single", "1", "zoo.lineage", json.dumps(old))
    read = registry.get_version("models:/single/1")
    assert "parents" not in read.lineage
    assert parents_of(read.lineage) == [v1.lineage["parent"]]
    capsys.readouterr()
    assert run(["registry", "show", "models:/single/1"]) == 0
    assert "timm:test_resnet.r160_in1k" in capsys.readouterr().out
    child = _register("single-child", "models:/single/1")
    assert [p["reference"] for p in child.lineage["parents"]] == ["models:/single/1"]
