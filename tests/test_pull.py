"""`zoo pull` and `zoo cache` against a local Hub speaking the real protocol to the real
huggingface_hub client (tests/hub_fixture.py)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.hub_fixture import FakeHub, running_hub
from zoo.cli import run

REPO = "acme/tiny-net"


def _safetensors_bytes(n_floats: int, seed: int = 0) -> bytes:
    import torch
    from safetensors.torch import save

    g = torch.Generator().manual_seed(seed)
    return save({"weight": torch.randn(n_floats, generator=g), "bias": torch.zeros(3)})


def _card(license_id: str = "apache-2.0") -> bytes:
    return f"---\nlicense: {license_id}\n---\n# tiny\n".encode()


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHub]:
    with running_hub() as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        monkeypatch.delenv("CI", raising=False)
        yield server


def _tiny_repo(hub: FakeHub, n_floats: int = 1000) -> str:
    return hub.add_repo(
        REPO,
        {
            "model.safetensors": _safetensors_bytes(n_floats),
            "pytorch_model.bin": b"not used: safetensors is preferred",
            "config.json": json.dumps({"architecture": "test_resnet", "num_classes": 3}).encode(),
            "README.md": _card(),
        },
    )


def _repo_dir() -> Path:
    return Path(os.environ["HF_HUB_CACHE"]) / f"models--{REPO.replace('/', '--')}"


def test_first_pull_verifies_pinned_repull_makes_no_request_unpinned_one_head(
    hub: FakeHub, capsys: pytest.CaptureFixture[str]
) -> None:
    from zoo.weights.cache import list_records

    commit = _tiny_repo(hub)
    assert run(["pull", f"hf:{REPO}"]) == 0
    assert hub.count("GET", "/resolve/") >= 3  # weights, config, card
    assert hub.count("GET", "pytorch_model.bin") == 0  # safetensors preferred
    (rec,) = list_records()
    assert rec.reference == f"hf:{REPO}@{commit}" and rec.revision == commit
    assert rec.license == "apache-2.0"
    assert rec.source == f"{hub.url}/{REPO}"
    files = {f.name: f for f in rec.files}
    assert set(files) == {"model.safetensors", "config.json", "README.md"}
    data = hub.repos[REPO].files["model.safetensors"]
    assert files["model.safetensors"].sha256 == hashlib.sha256(data).hexdigest()
    assert files["model.safetensors"].size == len(data)

    hub.reset_requests()
    assert run(["pull", f"hf:{REPO}@{commit}"]) == 0
    assert hub.hub_requests() == []  # pinned and recorded: nothing asked

    hub.reset_requests()
    assert run(["pull", f"hf:{REPO}"]) == 0
    assert hub.count("HEAD") <= 1 and hub.count("GET", "/resolve/") == 0

    capsys.readouterr()
    assert run(["cache", "ls", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["kind"] == "cache_list" and doc["count"] == 1
    model = doc["models"][0]
    assert model["revision"] == commit and model["license"] == "apache-2.0"
    assert {f["name"] for f in model["files"]} == set(files)
    assert model["pulled_at"] and model["source"]

    assert run(["info", f"hf:{REPO}@{commit}", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["cache"]["revision"] == commit
    assert {f["sha256"] for f in info["cache"]["files"]} >= {files["model.safetensors"].sha256}


def test_wrong_bytes_under_the_right_etag_fail_and_leave_no_blob_or_link(
    hub: FakeHub, capsys: pytest.CaptureFixture[str]
) -> None:
    from zoo.weights.cache import list_records

    _tiny_repo(hub)
    hub.corrupt.add((REPO, "model.safetensors"))
    assert run(["pull", f"hf:{REPO}"]) == 4
    errors = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("zoo: error:")]
    assert len(errors) == 1 and "model.safetensors does not match" in errors[0]
    etag = hashlib.sha256(hub.repos[REPO].files["model.safetensors"]).hexdigest()
    assert not (_repo_dir() / "blobs" / etag).exists()
    assert not list(_repo_dir().glob("snapshots/*/model.safetensors"))
    assert list_records() == []
    # the server heals: the next pull succeeds
    hub.corrupt.clear()
    assert run(["pull", f"hf:{REPO}"]) == 0
    assert (_repo_dir() / "blobs" / etag).is_file()


def test_cache_verify_names_a_file_flipped_after_the_pull(
    hub: FakeHub, capsys: pytest.CaptureFixture[str]
) -> None:
    _tiny_repo(hub)
    assert run(["pull", f"hf:{REPO}"]) == 0
    assert run(["cache", "verify"]) == 0
    (snapshot,) = _repo_dir().glob("snapshots/*/model.safetensors")
    blob = snapshot.resolve()
    raw = bytearray(blob.read_bytes())
    raw[100] ^= 0x01
    blob.chmod(0o644)
    blob.write_bytes(bytes(raw))
    capsys.readouterr()
    assert run(["cache", "verify", f"hf:{REPO}"]) == 4
    out, err = capsys.readouterr()
    assert "model.safetensors: BAD" in out and "config.json: ok" in out
    assert "model.safetensors" in err and err.startswith("zoo: error:")


def test_a_download_cut_at_11_mib_resumes_with_a_range_request_and_verifies(
    hub: FakeHub,
) -> None:
    from zoo.upkeep.cache import verify
    from zoo.weights.cache import list_records

    _tiny_repo(hub, n_floats=(12 * 2**20 + 300_000) // 4)  # ~12.3 MiB
    size = len(hub.repos[REPO].files["model.safetensors"])
    assert size >= 12 * 2**20
    hub.cut_after[(REPO, "model.safetensors")] = 11 * 2**20
    code = run(["pull", f"hf:{REPO}"])
    if code != 0:  # the client gave up this time: the next pull resumes
        code = run(["pull", f"hf:{REPO}"])
    assert code == 0
    ranges = [r.range for r in hub.requests if r.method == "GET" and r.range]
    assert ranges, "no request resumed with a Range header"
    start = int(ranges[0].split("=")[1].rstrip("-"))
    assert 0 < start < size
    assert all(e.ok for e in verify(list_records()))
    assert not list(_repo_dir().rglob("*.incomplete"))


def _zoo_subprocess(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "zoo", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_four_concurrent_pulls_all_succeed_with_one_blob_and_no_partial_file(
    hub: FakeHub,
) -> None:
    _tiny_repo(hub, n_floats=3 * 2**20 // 4)
    env = {**os.environ, "CI": "true"}
    procs = [_zoo_subprocess(["pull", f"hf:{REPO}"], env) for _ in range(4)]
    results = [(p.wait(timeout=300), *p.communicate()) for p in procs]
    for code, _out, err in results:
        assert code == 0, err
    assert len(list((_repo_dir() / "blobs").iterdir())) == 3  # weights, config, card
    assert not list(_repo_dir().rglob("*.incomplete"))
    assert hub.count("GET", "model.safetensors") == 1
    assert run(["cache", "verify"]) == 0


def test_offline_a_cached_model_pulls_and_an_uncached_one_fails_in_one_line(
    hub: FakeHub, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _tiny_repo(hub)
    assert run(["pull", f"hf:{REPO}"]) == 0
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    hub.reset_requests()
    assert run(["pull", f"hf:{REPO}"]) == 0
    assert hub.hub_requests() == []
    capsys.readouterr()
    assert run(["pull", "hf:acme/never-pulled"]) == 3
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "not in the local cache" in err and "zoo pull hf:acme/never-pulled" in err
    assert hub.hub_requests() == []


def test_offline_a_record_is_rebuilt_from_the_hf_cache_and_verified(
    hub: FakeHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Files another tool put in the HF cache count as cached, once verified."""
    import shutil

    from zoo.weights.cache import list_records, records_dir

    commit = _tiny_repo(hub)
    assert run(["pull", f"hf:{REPO}"]) == 0
    shutil.rmtree(records_dir())
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    hub.reset_requests()
    assert run(["pull", f"hf:{REPO}"]) == 0
    assert hub.hub_requests() == []
    (rec,) = list_records()
    assert rec.revision == commit and rec.license == "apache-2.0"


def test_revision_given_twice_and_different_is_a_usage_error(
    hub: FakeHub, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["pull", f"hf:{REPO}@main", "--revision", "v2"]) == 2
    assert "give only one of them" in capsys.readouterr().err
    assert hub.hub_requests() == []


def test_unknown_repo_and_missing_weights_are_not_found(
    hub: FakeHub, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["pull", "hf:acme/nothing-here"]) == 3
    assert "no model repo 'acme/nothing-here'" in capsys.readouterr().err
    hub.add_repo("acme/no-weights", {"config.json": b"{}"})
    assert run(["pull", "hf:acme/no-weights"]) == 3
    assert "no weights file" in capsys.readouterr().err


def test_cache_rm_removes_only_that_revision_through_the_hf_cache_api(
    hub: FakeHub, capsys: pytest.CaptureFixture[str]
) -> None:
    from zoo.weights.cache import list_records

    first = _tiny_repo(hub)
    assert run(["pull", f"hf:{REPO}"]) == 0
    second = hub.add_repo(
        REPO, {"model.safetensors": _safetensors_bytes(500, seed=1), "config.json": b"{}"}
    )
    assert second != first
    assert run(["pull", f"hf:{REPO}"]) == 0
    assert {r.revision for r in list_records()} == {first, second}
    assert run(["cache", "rm", f"hf:{REPO}"]) == 2  # two revisions: say which
    assert run(["cache", "rm", f"hf:{REPO}@{first}"]) == 0
    assert not (_repo_dir() / "snapshots" / first).exists()
    assert (_repo_dir() / "snapshots" / second / "model.safetensors").is_file()
    assert [r.revision for r in list_records()] == [second]
    assert run(["cache", "verify"]) == 0
    assert run(["cache", "rm", f"hf:{REPO}@{first}"]) == 3


def test_timm_pull_and_pretrained_build_use_the_verified_cache(hub: FakeHub) -> None:
    import timm
    import torch
    from safetensors.torch import save

    import zoo

    torch.manual_seed(0)
    source = timm.create_model("test_resnet", pretrained=False)
    data = save({k: v.contiguous() for k, v in source.state_dict().items()})
    hub.add_repo("timm/test_resnet.r160_in1k", {"model.safetensors": data})

    backbone = zoo.build_backbone("timm:test_resnet", num_classes=3)
    assert backbone.weights_sha256 == hashlib.sha256(data).hexdigest()
    assert backbone.info.reference == "timm:test_resnet.r160_in1k"
    got, want = backbone.model.state_dict(), source.state_dict()
    assert torch.equal(got["conv1.0.weight"], want["conv1.0.weight"])
    assert torch.equal(got["layer4.0.conv1.weight"], want["layer4.0.conv1.weight"])
    assert got["fc.weight"].shape[0] == 3  # a new head
    same = zoo.build_backbone("timm:test_resnet.r160_in1k")  # no num_classes: original head
    assert torch.equal(same.model.state_dict()["fc.weight"], want["fc.weight"])
    fresh = zoo.build_backbone("timm:test_resnet", num_classes=1000)  # same width, new head
    assert not torch.equal(fresh.model.state_dict()["fc.weight"], want["fc.weight"])
    assert hub.count("GET", "model.safetensors") == 1


def test_pulling_an_architecture_says_which_tag_it_took(
    hub: FakeHub, capsys: pytest.CaptureFixture[str]
) -> None:
    hub.add_repo("timm/test_resnet.r160_in1k", {"model.safetensors": _safetensors_bytes(10)})
    capsys.readouterr()
    assert run(["pull", "timm:test_resnet"]) == 0
    out = capsys.readouterr()
    assert out.out.startswith("timm:test_resnet.r160_in1k")
    assert (
        "zoo: timm:test_resnet resolved to timm:test_resnet.r160_in1k "
        "(timm's default pretrained tag)\n" in out.err
    )
    assert run(["pull", "timm:test_resnet.r160_in1k"]) == 0  # named in full: nothing to say
    assert "resolved" not in capsys.readouterr().err


def test_hf_timm_format_repo_builds_offline_once_pulled(
    hub: FakeHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    import timm
    import torch
    from safetensors.torch import save

    import zoo

    source = timm.create_model("test_efficientnet", pretrained=False, num_classes=4)
    config = {
        "architecture": "test_efficientnet",
        "num_classes": 4,
        "pretrained_cfg": {"input_size": [3, 160, 160], "mean": [0.5] * 3, "std": [0.5] * 3},
    }
    hub.add_repo(
        "acme/effnet",
        {
            "model.safetensors": save(source.state_dict()),
            "config.json": json.dumps(config).encode(),
            "README.md": _card("mit"),
        },
    )
    assert run(["pull", "hf:acme/effnet"]) == 0
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    hub.reset_requests()
    backbone = zoo.build_backbone("hf:acme/effnet", num_classes=2)
    assert hub.hub_requests() == []
    assert backbone.info.license == "mit" and backbone.info.mean == (0.5, 0.5, 0.5)
    assert [n for n, _ in backbone.stages()][-1] == "head"
    assert torch.equal(
        backbone.model.state_dict()["conv_stem.weight"], source.state_dict()["conv_stem.weight"]
    )
    assert backbone.model.get_classifier().out_features == 2


def test_torchvision_mirror_file_is_verified_by_its_name_and_resumes(
    hub: FakeHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    import zoo
    from zoo_torchvision import mirror_url

    data = os.urandom(3 * 2**20)
    name = f"tinynet-{hashlib.sha256(data).hexdigest()[:8]}.pth"
    hub.add_torchvision_file(name, data)
    monkeypatch.setenv("ZOO_TORCHVISION_MIRROR", f"{hub.url}/torchvision")
    url = mirror_url(f"https://download.pytorch.org/models/{name}")
    assert url == f"{hub.url}/torchvision/{name}"
    hub.cut_after[("torchvision", name)] = 2**20
    pulled = zoo.pull_url(provider="torchvision", name="tinynet.V1", url=url)
    assert pulled.weights_file.sha256 == hashlib.sha256(data).hexdigest()
    assert Path(pulled.weights_file.path).read_bytes() == data
    ranges = [r.range for r in hub.requests if r.range]
    assert ranges and int(ranges[0].split("=")[1].rstrip("-")) > 0
    assert not list(Path(pulled.weights_file.path).parent.glob("*.incomplete"))


def test_torchvision_pull_through_the_mirror_refuses_a_wrong_hash_prefix(
    hub: FakeHub, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from zoo.weights.cache import list_records

    hub.add_torchvision_file("resnet18-f37072fd.pth", b"these are not resnet18's weights")
    monkeypatch.setenv("ZOO_TORCHVISION_MIRROR", f"{hub.url}/torchvision/")
    assert run(["pull", "torchvision:resnet18"]) == 4
    err = capsys.readouterr().err
    assert "does not match its published hash" in err
    assert hub.count("GET", "/torchvision/resnet18-f37072fd.pth") == 1
    cache = Path(os.environ["ZOO_HOME"]) / "cache" / "torchvision"
    assert not list(cache.glob("resnet18-*"))  # neither the file nor a partial one
    assert list_records() == []


def test_pull_prints_plain_lines_under_ci(hub: FakeHub) -> None:
    _tiny_repo(hub)
    env = {**os.environ, "CI": "true"}
    proc = _zoo_subprocess(["pull", f"hf:{REPO}"], env)
    _out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "zoo: downloading model.safetensors: started" in err
    assert "zoo: downloading model.safetensors: done" in err
    assert "\x1b[" not in err  # no terminal control codes


def test_pull_draws_a_progress_bar_on_a_terminal(hub: FakeHub) -> None:
    import pty
    import select

    _tiny_repo(hub, n_floats=2**20)
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["COLUMNS"] = "100"
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "zoo", "pull", f"hf:{REPO}"],
        env=env,
        stdin=slave,
        stdout=slave,
        stderr=slave,
    )
    os.close(slave)
    chunks = []
    while True:
        ready, _, _ = select.select([master], [], [], 60)
        if not ready:
            break
        try:
            chunk = os.read(master, 65536)
        except OSError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    proc.wait(timeout=60)
    os.close(master)
    text = b"".join(chunks).decode("utf-8", "replace")
    assert proc.returncode == 0, text
    assert "━" in text  # rich's bar
    assert "zoo: downloading" not in text  # not the plain lines


def test_cache_ls_shows_the_revision_and_each_files_sha256_json_the_full_values(
    hub: FakeHub, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "200")  # a wide terminal: rows are not folded
    commit = _tiny_repo(hub)
    assert run(["pull", f"hf:{REPO}"]) == 0
    capsys.readouterr()
    assert run(["cache", "ls"]) == 0
    out = capsys.readouterr().out
    header = next(line for line in out.splitlines() if "reference" in line)
    assert "revision" in header and "sha256" in header
    files = hub.repos[REPO].files
    for name in ("model.safetensors", "config.json", "README.md"):
        digest = hashlib.sha256(files[name]).hexdigest()
        row = next(line for line in out.splitlines() if name in line)
        assert digest[:12] in row  # the file and its hash on one line
    assert commit[:12] in out and commit not in out  # the full values are in --json
    assert run(["cache", "ls", "--json"]) == 0
    (model,) = json.loads(capsys.readouterr().out)["models"]
    assert model["revision"] == commit
    assert {f["name"]: f["sha256"] for f in model["files"]} == {
        name: hashlib.sha256(files[name]).hexdigest()
        for name in ("model.safetensors", "config.json", "README.md")
    }
