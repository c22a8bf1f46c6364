"""Network faults on `zoo pull`, against the local Hub (tests/hub_fixture.py) and the real
huggingface_hub client: a server that ignores Range, and one slower than the timeout.
(A cut connection and wrong bytes: tests/test_pull.py.)"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from test_pull import REPO, _repo_dir, _tiny_repo

from faults.helpers import expect_error, run_zoo
from tests.hub_fixture import FakeHub, running_hub


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHub]:
    with running_hub() as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        yield server


def _verified() -> bool:
    from zoo.upkeep.cache import verify
    from zoo.weights.cache import list_records

    records = list_records()
    return bool(records) and all(e.ok for e in verify(records))


def test_a_cut_download_resumed_against_a_server_that_ignores_range(hub: FakeHub) -> None:
    _tiny_repo(hub, n_floats=3 * 2**20 // 4)
    hub.cut_after[(REPO, "model.safetensors")] = 2**20
    hub.ignore_range.add((REPO, "model.safetensors"))  # 200 and the whole body, always
    proc = run_zoo("pull", f"hf:{REPO}", env={"HF_ENDPOINT": hub.url})
    if proc.returncode != 0:  # the client gave up this time: one line, and a retry works
        expect_error(proc, (3, 4), "model.safetensors")
        proc = run_zoo("pull", f"hf:{REPO}", env={"HF_ENDPOINT": hub.url})
    assert proc.returncode == 0, proc.stderr
    assert _verified()  # the whole file, not a partial appended to a restart
    (served,) = _repo_dir().glob("snapshots/*/model.safetensors")
    assert served.stat().st_size == len(hub.repos[REPO].files["model.safetensors"])


def test_a_server_slower_than_the_timeout_is_one_line_and_nothing_is_recorded(
    hub: FakeHub,
) -> None:
    _tiny_repo(hub)
    hub.stall[(REPO, "model.safetensors")] = 8.0
    env = {"HF_ENDPOINT": hub.url, "HF_HUB_DOWNLOAD_TIMEOUT": "1", "HF_HUB_ETAG_TIMEOUT": "1"}
    proc = run_zoo("pull", f"hf:{REPO}", env=env)
    expect_error(proc, (3, 4), "hf:" + REPO)
    from zoo.weights.cache import list_records

    assert list_records() == []
    assert not list(_repo_dir().glob("snapshots/*/model.safetensors"))
    hub.stall.clear()
    again = run_zoo("pull", f"hf:{REPO}", env=env)
    assert again.returncode == 0, again.stderr
    assert _verified()
