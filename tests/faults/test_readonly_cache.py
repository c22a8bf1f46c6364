"""A read-only cache (the zoo home and the Hugging Face cache on a read-only mount):
reading a model already cached works -- `zoo pull` of it, online or offline, its lock
taken in the temp folder -- and anything that would write (a forced or a new pull)
refuses in one line naming the folder (exit 2), before any download."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from faults.helpers import expect_error, run_zoo_readonly, zoo_env
from tests.hub_fixture import FakeHub, running_hub

REF = "timm:test_resnet.r160_in1k"


@pytest.fixture
def cached(monkeypatch: pytest.MonkeyPatch, zoo_home: Path) -> Iterator[tuple[FakeHub, str]]:
    """REF pulled into this test's cache from a local hub; yields (hub, commit)."""
    import timm
    from safetensors.torch import save

    from zoo.cli import run

    model = timm.create_model("test_resnet", pretrained=False)
    with running_hub() as hub:
        hub.add_repo(
            "timm/test_resnet.r160_in1k",
            {"model.safetensors": save({k: v.contiguous() for k, v in model.state_dict().items()})},
        )
        hub.add_repo("timm/test_efficientnet.r160_in1k", {"model.safetensors": b"x" * 64})
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        assert run(["pull", REF]) == 0
        from zoo.weights.cache import list_records

        (rec,) = list_records()
        assert rec.revision is not None
        hub.reset_requests()
        yield hub, rec.revision


def _readonly() -> list[Path]:
    return [Path(os.environ["ZOO_HOME"]), Path(os.environ["HF_HUB_CACHE"])]


def test_pull_of_a_cached_model_works_on_a_read_only_cache(cached: tuple[FakeHub, str]) -> None:
    hub, commit = cached
    for env in [zoo_env(), zoo_env(HF_HUB_OFFLINE="1")]:
        proc = run_zoo_readonly("pull", REF, readonly=_readonly(), env=env)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert commit in proc.stdout and "zoo: error" not in proc.stderr
    assert hub.count("GET") == 0  # nothing downloaded


def test_pulls_that_would_write_refuse_naming_the_folder(cached: tuple[FakeHub, str]) -> None:
    hub, _ = cached
    cache = os.environ["HF_HUB_CACHE"]
    proc = run_zoo_readonly("pull", "--force", REF, readonly=_readonly())
    expect_error(proc, 2, cache, "read-only", "HF_HUB_CACHE")
    proc = run_zoo_readonly("pull", "timm:test_efficientnet.r160_in1k", readonly=_readonly())
    expect_error(proc, 2, cache, "read-only")
    assert hub.count("GET") == 0  # refused before any download
