"""Cached weights altered after the pull: one byte flipped, the file's size and mtime
put back. Every use re-checks the file against its pinned SHA-256 whenever its (size,
mtime_ns, ctime_ns, inode) differ from when it was last hashed -- ctime cannot be put
back -- so `finetune`, `rank`, `export` and `pull` refuse it (exit 4, naming the file and
`zoo pull --force`) before anything trains; `zoo pull --force` heals it, and the lineage
then records the SHA-256 of the bytes actually loaded."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from subprocess import CompletedProcess

import pytest
from finetune_helpers import make_images

from faults.helpers import expect_error, expect_error_in_process, registered
from tests.hub_fixture import FakeHub, running_hub

REF = "timm:test_resnet.r160_in1k"
TRAIN = ["--epochs", "1", "--image-size", "32", "--batch-size", "4", "--strategy", "linear-probe"]


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHub]:
    import timm
    import torch
    from safetensors.torch import save

    torch.manual_seed(0)
    model = timm.create_model("test_resnet", pretrained=False)
    with running_hub() as server:
        server.add_repo(
            "timm/test_resnet.r160_in1k",
            {"model.safetensors": save({k: v.contiguous() for k, v in model.state_dict().items()})},
        )
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        yield server


def _flip_one_byte_keeping_size_and_times(path: Path) -> None:
    """What a bad disk, a stray tool or an attacker leaves: same size, same mtime."""
    st = os.stat(path)
    blob = path.resolve()
    data = bytearray(blob.read_bytes())
    data[-3] ^= 0x01  # in the tensor data: still a valid safetensors file
    blob.write_bytes(bytes(data))
    os.utime(blob, ns=(st.st_atime_ns, st.st_mtime_ns))
    after = os.stat(path)
    assert (after.st_size, after.st_mtime_ns) == (st.st_size, st.st_mtime_ns)


def _weights() -> Path:
    from zoo.weights.cache import list_records

    (rec,) = list_records()
    return Path(rec.weights_file.path)


def test_a_flipped_byte_is_refused_by_every_use_until_pulled_again(
    hub: FakeHub, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from zoo.cli import run

    assert run(["pull", REF]) == 0
    weights = _weights()
    _flip_one_byte_keeping_size_and_times(weights)
    data = make_images(tmp_path / "data", classes=2, per_class=4, size=(32, 32))

    argv = ["finetune", REF, str(data), *TRAIN, "--name", "tampered"]
    capsys.readouterr()
    code = run(argv)
    out, err = capsys.readouterr()
    expect_error(CompletedProcess(argv, code, out, err), 4, str(weights), "zoo pull --force")
    assert "epoch" not in (out + err).lower()  # refused before anything trained
    assert registered() == []

    expect_error_in_process(["rank", str(data), REF], capsys, 4, str(weights), "--force")
    out = tmp_path / "model.onnx"
    argv = ["export", REF, "--out", str(out), "--no-benchmark"]
    expect_error_in_process(argv, capsys, 4, str(weights), "--force")
    assert not out.exists()
    expect_error_in_process(["pull", REF], capsys, 4, str(weights), "zoo pull --force")

    hub.reset_requests()
    assert run(["pull", "--force", REF]) == 0
    assert hub.count("GET", "model.safetensors") == 1
    assert run(["finetune", REF, str(data), *TRAIN, "--name", "healed"]) == 0
    from zoo.registry import get_version

    tags = get_version("models:/healed/1").tags
    assert tags["zoo.parent_sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()


def test_the_stat_vouches_for_hashed_bytes_and_any_change_means_hashing_again(
    hub: FakeHub,
) -> None:
    """The gate: the stat recorded at the pull vouches for the bytes; rewriting the same
    bytes (new mtime and ctime) costs one hash, which is then remembered."""
    from zoo.cli import run
    from zoo.contract.errors import IntegrityError
    from zoo.weights.cache import file_stat, pin_for
    from zoo.weights.checkpoints import load_weights

    assert run(["pull", REF]) == 0
    weights = _weights()
    want = hashlib.sha256(weights.read_bytes()).hexdigest()
    pin = pin_for(weights)
    assert pin is not None and pin.sha256 == want and pin.vouches_for(file_stat(weights))
    assert load_weights(weights).sha256 == want

    blob = weights.resolve()
    blob.write_bytes(blob.read_bytes())  # the same bytes, written again
    assert not pin.vouches_for(file_stat(weights))
    assert load_weights(weights).sha256 == want  # hashed again: still the pinned bytes
    again = pin_for(weights)
    assert again is not None and again.vouches_for(file_stat(weights))

    _flip_one_byte_keeping_size_and_times(weights)
    assert not again.vouches_for(file_stat(weights))  # ctime moved, whatever mtime says
    with pytest.raises(IntegrityError, match="zoo pull --force"):
        load_weights(weights)
