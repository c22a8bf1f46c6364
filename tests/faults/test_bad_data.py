"""Bad data: a dataset that cannot train fails in one line (exit 2) naming what to fix;
files that cannot be used -- corrupt, not images, decompression bombs, symlink loops,
names that are not UTF-8 -- are skipped and listed, and the run still registers."""

from __future__ import annotations

import json
import os
import struct
import zlib
from pathlib import Path

import pytest
from finetune_helpers import make_images

from faults.helpers import expect_error_in_process, registered

TRAIN = ["--random-init", "--epochs", "1", "--image-size", "32", "--batch-size", "4"]


def _bomb_png(width: int = 40000, height: int = 40000) -> bytes:
    """A PNG header claiming 1.6 gigapixels in a few bytes (Pillow must refuse, not decode)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * 4096)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def _finetune(root: Path, capsys: pytest.CaptureFixture[str], code: int, *words: str) -> str:
    argv = ["finetune", "timm:test_resnet", str(root), *TRAIN, "--name", "bad-data"]
    line = expect_error_in_process(argv, capsys, code, *words)
    assert registered() == []
    return line


def test_an_empty_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty").mkdir()
    _finetune(tmp_path / "empty", capsys, 2, "a folder without class folders")


def test_class_folders_without_images(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for c in ("a", "b"):
        (tmp_path / "d" / c).mkdir(parents=True)
    _finetune(tmp_path / "d", capsys, 2, "no image files")


def test_one_class(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = make_images(tmp_path / "one", classes=1, per_class=6, size=(32, 32))
    _finetune(root, capsys, 2, "2 classes")


def test_a_class_with_one_image(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = make_images(tmp_path / "d", classes=2, per_class=6, size=(32, 32))
    for p in sorted((root / "class1").iterdir())[1:]:
        p.unlink()
    _finetune(root, capsys, 2, "at least 2 usable images", "class1 (1)")


def test_forty_percent_corrupt(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = make_images(tmp_path / "d", classes=2, per_class=5, size=(32, 32))
    for i, p in enumerate(sorted(root.rglob("*.png"))):
        if i % 5 in (0, 1):  # 4 of 10
            p.write_bytes(p.read_bytes()[:60])
    _finetune(root, capsys, 2, "40%", "more than the 25% allowed")


def test_a_missing_dataset_and_a_file_as_dataset(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _finetune(tmp_path / "nowhere", capsys, 3, "no dataset")
    (tmp_path / "x.txt").write_text("a")
    _finetune(tmp_path / "x.txt", capsys, 2, "neither a folder nor a CSV")


@pytest.mark.slow
def test_unusable_files_are_skipped_listed_and_the_run_registers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from zoo.cli import run

    root = make_images(tmp_path / "d", classes=2, per_class=6, size=(32, 32))
    # distinct images for the odd names (identical bytes would count as one image)
    extra = make_images(tmp_path / "extra", classes=2, per_class=6, size=(32, 32), seed=7)
    spare = iter(sorted(p.read_bytes() for p in extra.rglob("*.png")))
    (root / "class0" / "bomb.png").write_bytes(_bomb_png())
    (root / "class0" / "notes.txt").write_text("not an image")
    (root / "class1" / "program.exe").write_bytes(b"MZ" + os.urandom(200))
    (root / "class1" / "loop").symlink_to(root / "class1" / "loop")  # a link to itself
    (root / "class1" / "sub").mkdir()
    (root / "class1" / "sub" / "up").symlink_to(root / "class1")  # a folder loop
    undecodable = os.fsdecode(b"bad-\xff\xfe.png")
    (root / "class0" / undecodable).write_bytes(next(spare))
    for odd in ("sp ace.png", "ünïcødé.png", "new\nline.png", "-dash.png", "semi;colon.png"):
        (root / "class1" / odd).write_bytes(next(spare))
    capsys.readouterr()
    code = run(["finetune", "timm:test_resnet", str(root), *TRAIN, "--name", "odd", "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err[-3000:]
    assert "Traceback" not in err
    result = json.loads(out)
    reasons = {Path(s["path"]).name: s["reason"] for s in result["skipped"]}
    assert "bomb.png" in reasons and "notes.txt" in reasons and "program.exe" in reasons
    assert any("UTF-8" in r for r in reasons.values()), reasons
    assert result["model_uri"] == "models:/odd/1"
    from zoo.registry import get_version

    dataset = get_version("models:/odd/1").lineage["dataset"]
    assert dataset["num_images"] == 12 + 5  # the odd but valid UTF-8 names are used
