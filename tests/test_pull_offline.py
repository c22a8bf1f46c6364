"""`zoo pull` without access to its source names the real ways out, and only variables
that are actually set (the tests' hub endpoint is a closed port)."""

from __future__ import annotations

import pytest

from zoo.cli import run

REF = "timm:test_resnet.r160_in1k"


def _pull(capsys: pytest.CaptureFixture[str], ref: str = REF) -> tuple[int, str]:
    code = run(["pull", ref])
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return code, err


def test_unreachable_hub_names_mirror_import_and_offline_mode(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for var in ("HF_HUB_OFFLINE", "ZOO_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    code, err = _pull(capsys)
    assert code == 3
    assert "not reachable" in err
    assert "HF_ENDPOINT" in err and "zoo import" in err and "HF_HUB_OFFLINE=1" in err
    assert "unset" not in err  # nothing the user set is blamed


@pytest.mark.parametrize(("var", "other"), [("HF_HUB_OFFLINE", "ZOO_OFFLINE"),
                                            ("ZOO_OFFLINE", "HF_HUB_OFFLINE")])  # fmt: skip
def test_offline_mode_names_the_variable_that_is_set(
    var: str, other: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(var, "1")
    monkeypatch.delenv(other, raising=False)
    code, err = _pull(capsys)
    assert code == 3
    assert f"unset {var} and run `zoo pull {REF}`" in err and "zoo import" in err
    assert other not in err


def test_unreachable_torchvision_mirror_is_named(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for var in ("HF_HUB_OFFLINE", "ZOO_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("ZOO_TORCHVISION_MIRROR", "http://127.0.0.1:9")
    code, err = _pull(capsys, "torchvision:mobilenet_v3_small")
    assert code == 3
    assert "ZOO_TORCHVISION_MIRROR" in err and "zoo import" in err and "unset" not in err
