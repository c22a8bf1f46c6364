"""`zoo finetune` end to end on a tiny model: bad files, recipes, lineage, chains."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from PIL import Image

from tests.finetune_helpers import make_images
from zoo.cli import run


def _finetune_json(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, dict, str]:
    code = run(["finetune", *args, "--json"])
    out, err = capsys.readouterr()
    return code, (json.loads(out) if code == 0 else {}), err


def test_bad_files_are_skipped_and_the_run_registers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CI", "true")
    root = make_images(tmp_path / "data", classes=2, per_class=6)
    good = io.BytesIO()
    Image.new("RGB", (40, 40), (200, 30, 30)).save(good, format="JPEG")
    corrupt = root / "class0" / "corrupt.jpg"
    corrupt.write_bytes(good.getvalue()[:200])
    empty = root / "class1" / "empty.png"
    empty.write_bytes(b"")
    Image.new("CMYK", (40, 48), (0, 200, 200, 0)).save(root / "class0" / "cmyk.jpg")
    rgba = Image.new("RGBA", (40, 48), (0, 0, 0, 0))
    rgba.paste((30, 30, 220, 255), (0, 0, 40, 24))
    rgba.save(root / "class1" / "rgba.png")

    code, result, err = _finetune_json(
        [
            "timm:test_resnet",
            str(root),
            "--random-init",
            "--epochs",
            "3",
            "--image-size",
            "32",
            "--name",
            "badfiles",
        ],
        capsys,
    )
    assert code == 0, err
    skipped = {Path(s["path"]).name: s["reason"] for s in result["skipped"]}
    assert set(skipped) == {"corrupt.jpg", "empty.png"}
    assert skipped["empty.png"] == "empty file (0 bytes)"
    assert "truncated or corrupt" in skipped["corrupt.jpg"]
    assert str(corrupt) in err and str(empty) in err  # named by path as they are skipped
    assert result["model_uri"] == "models:/badfiles/1"
    # the waits after the last epoch are said (a pipe: started/done lines), in order
    lines = err.splitlines()
    scoring = [i for i, x in enumerate(lines) if x.startswith("zoo: scoring the registered epoch")]
    registering = [i for i, x in enumerate(lines) if x.startswith("zoo: registering badfiles: ")]
    assert [lines[i].rsplit(": ", 1)[1] for i in scoring] == ["started", "done"], err
    assert [lines[i].rsplit(": ", 1)[1] for i in registering] == ["started", "done"], err
    assert scoring[1] < registering[0]

    from zoo.registry import get_version

    version = get_version("models:/badfiles/1")
    dataset = version.lineage["dataset"]
    assert dataset["num_images"] == 14  # 12 + the CMYK JPEG + the RGBA PNG
    assert dataset["num_skipped"] == 2
    assert dataset["digest"].startswith("sha256:")


def test_recipe_file_lineage_and_a_fine_tune_of_a_fine_tune(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CI", "true")
    root = make_images(tmp_path / "data", classes=2, per_class=8)
    recipe = tmp_path / "recipe.toml"
    recipe.write_text(
        '[finetune]\nstrategy = "partial"\nunfreeze = 1\nepochs = 2\nimage-size = 32\n'
        "batch-size = 4\nlabel_smoothing = 0.0\n",
        encoding="utf-8",
    )
    code, first, err = _finetune_json(
        [
            "timm:test_resnet",
            str(root),
            "--random-init",
            "--config",
            str(recipe),
            "--name",
            "base-ft",
            "--lr",
            "0.002",
        ],
        capsys,
    )
    assert code == 0, err
    assert first["recipe"]["strategy"] == "partial" and first["recipe"]["lr"] == 0.002
    assert first["recipe"]["label_smoothing"] == 0.0

    from zoo.registry import get_version

    v1 = get_version(first["model_uri"])
    lineage = v1.lineage
    assert lineage["strategy"]["name"] == "partial"
    assert lineage["strategy"]["settings"]["unfreeze"] == 1
    assert lineage["strategy"]["plugin"]["plugin"] == "strategies"
    assert lineage["strategy"]["plugin"]["distribution"] == "transfer-zoo"
    assert lineage["parent"]["reference"].startswith("timm:test_resnet")
    assert v1.preprocessing["input_size"] == [3, 32, 32]
    assert v1.class_names == ("class0", "class1")

    code, second, err = _finetune_json(
        [
            first["model_uri"],
            str(root),
            "--strategy",
            "partial",
            "--unfreeze",
            "1",
            "--epochs",
            "1",
            "--name",
            "child-ft",
        ],
        capsys,
    )
    assert code == 0, err
    v2 = get_version(second["model_uri"])
    assert v2.lineage["parent"]["reference"] == "models:/base-ft/1"
    assert v2.preprocessing["input_size"] == [3, 32, 32]  # inherited from the parent


def test_unknown_strategy_and_bad_config_are_usage_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = make_images(tmp_path / "data", classes=2, per_class=3)
    assert run(["finetune", "timm:test_resnet", str(root), "--strategy", "nope"]) == 2
    assert "no strategy 'nope'" in capsys.readouterr().err
    bad = tmp_path / "r.yaml"
    bad.write_text("epochz: 3\n")
    assert run(["finetune", "timm:test_resnet", str(root), "--config", str(bad)]) == 2
    assert "unknown recipe setting(s): epochz" in capsys.readouterr().err


def test_a_reference_without_its_tag_says_once_which_tag_it_trained(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`timm:test_resnet` becomes timm's default tag, `.r160_in1k`, pulled from the
    Hub: finetune says so in one line, in `zoo info`'s words; a full reference says
    nothing."""
    from tests.hub_fixture import serving_timm_default

    root = make_images(tmp_path / "data", classes=2, per_class=6)
    said = (
        "zoo: timm:test_resnet resolved to timm:test_resnet.r160_in1k (timm's default "
        "pretrained tag)"
    )
    args = [str(root), "--epochs", "1", "--image-size", "32"]
    with serving_timm_default(monkeypatch):
        code, result, err = _finetune_json(["timm:test_resnet", *args, "--name", "tagged"], capsys)
        assert code == 0, err
        assert err.count(said) == 1, err
        assert err.count("resolved to") == 1, err
        assert result["model_uri"] == "models:/tagged/1"  # stdout is the JSON alone

        from zoo.registry import get_version

        parent = get_version("models:/tagged/1").lineage["parent"]["reference"]
        assert parent.startswith("timm:test_resnet.r160_in1k")  # the tag it said

        code, _, err = _finetune_json(
            ["timm:test_resnet.r160_in1k", *args, "--name", "full", "--dry-run"], capsys
        )
        assert code == 0, err
        assert "resolved" not in err, err
