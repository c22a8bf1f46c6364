"""With the ONNX plugin's distribution (zoo-onnx) uninstalled, zoo still lists, pulls,
fine-tunes and registers, and `zoo export` names the missing exporter in one line.

The environment is real: a venv (``python -m venv --without-pip``, no copies) whose
site-packages holds a symlink to every entry of this interpreter's site-packages except
the distributions that would put ``zoo_onnx`` on the path:

- zoo-onnx itself: its ``zoo_onnx-*.dist-info`` (its entry point ``onnx = "zoo_onnx"``),
  its editable ``.pth`` and finder, or an installed ``zoo_onnx/`` package;
- transfer-zoo: its dist-info and its editable ``.pth`` and finder, which belong to
  whichever checkout was installed (before zoo-onnx was a distribution of its own, that
  install also named ``onnx = "zoo_onnx"`` and mapped ``zoo_onnx`` to plugins/zoo_onnx).
  In their place the venv gets this checkout: a ``.pth`` naming the repository and its
  ``plugins/`` folder (not ``plugins/zoo-onnx``), and transfer-zoo's dist-info copied
  with the entry points this checkout's pyproject.toml declares;
- any other ``.pth`` or editable finder whose text names ``zoo_onnx`` or ``zoo-onnx``.

So the same test holds before and after `pip install -e plugins/zoo-onnx` (the README's
install line): either way the venv has no ``zoo_onnx`` by any path, which the test checks
inside it (``importlib.util.find_spec``, ``zoo plugins``) before it runs the CLI there:
list, pull (from the loopback Hub of tests/hub_fixture.py), finetune (1 epoch, 36 px
images), the registered version, and `zoo export`.
"""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import venv
from pathlib import Path

import pytest

from tests.finetune_helpers import make_images
from tests.hub_fixture import running_hub

pytestmark = pytest.mark.slow  # about a minute and a half: five zoo processes, one fine-tune

ROOT = Path(__file__).resolve().parents[1]
HIDDEN = ("zoo_onnx", "zoo-onnx")
REPLACED = "transfer_zoo"  # by this checkout


def _shared_site_packages() -> list[Path]:
    dirs = [Path(p) for p in site.getsitepackages()]
    if site.ENABLE_USER_SITE and Path(site.getusersitepackages()).is_dir():
        dirs.append(Path(site.getusersitepackages()))
    return [d for d in dirs if d.is_dir()]


def _normalised(name: str) -> str:
    return name.lower().replace("-", "_").replace(".", "_")


def _left_out(entry: Path) -> bool:
    """Entries of the shared site-packages the venv does not see."""
    name = _normalised(entry.name)
    if name.startswith(("zoo_onnx", REPLACED)):
        return True  # the distributions' dist-info (or an installed zoo_onnx package)
    if name.startswith("__editable__") and ("zoo_onnx" in name or REPLACED in name):
        return True  # their editable .pth and finder
    if entry.suffix == ".pth" or (name.startswith("__editable__") and entry.suffix == ".py"):
        text = entry.read_text(encoding="utf-8", errors="replace")
        return any(h in text for h in HIDDEN)
    return False


def _entry_points(pyproject: Path) -> str:
    """entry_points.txt for this checkout's transfer-zoo, from its pyproject.toml."""
    import tomllib

    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    groups = {"console_scripts": project.get("scripts", {}), **project["entry-points"]}
    return "".join(
        f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in entries.items()) + "\n"
        for group, entries in groups.items()
    )


def _venv_without_zoo_onnx(folder: Path) -> Path:
    """The venv's python."""
    venv.create(folder, with_pip=False, symlinks=True)
    python = folder / "bin" / "python"
    target = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
            capture_output=True, text=True, check=True, env={"PATH": os.environ["PATH"]},
        ).stdout.strip()
    )  # fmt: skip
    installed = None
    for shared in _shared_site_packages():
        for entry in sorted(shared.iterdir()):
            if _normalised(entry.name).startswith(REPLACED) and entry.name.endswith(".dist-info"):
                installed = installed or entry
            if _left_out(entry) or (target / entry.name).exists():
                continue
            (target / entry.name).symlink_to(entry)
    if installed is None:
        pytest.skip("transfer-zoo is not installed here (README: python -m pip install -e ...)")
    dist_info = target / installed.name
    shutil.copytree(installed, dist_info)
    (dist_info / "entry_points.txt").write_text(_entry_points(ROOT / "pyproject.toml"))
    (dist_info / "RECORD").write_text("")  # the copy records no files of its own
    (target / "zoo-checkout.pth").write_text(f"{ROOT}\n{ROOT / 'plugins'}\n")
    return python


def _zoo(python: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(python), "-m", "zoo", *args],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip


def _weights() -> bytes:
    import timm
    import torch
    from safetensors.torch import save

    torch.manual_seed(0)
    state = timm.create_model("test_resnet", pretrained=False).state_dict()
    return save({k: v.contiguous() for k, v in state.items()})


def test_without_zoo_onnx_zoo_lists_pulls_finetunes_registers_and_export_says_what_to_install(
    tmp_path: Path,
) -> None:
    python = _venv_without_zoo_onnx(tmp_path / "venv")
    data = make_images(tmp_path / "data", classes=3, per_class=12, size=(36, 36))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "MLFLOW_"))}
    env |= {
        "PYTHONNOUSERSITE": "1",
        "CI": "true",
        "NO_COLOR": "1",
        "ZOO_HOME": str(tmp_path / "home"),
    }
    env.pop("HF_HUB_OFFLINE", None)

    probe = subprocess.run(
        [str(python), "-c", PROBE], env=env, capture_output=True, text=True, check=False
    )
    assert probe.returncode == 0, probe.stderr
    seen = json.loads(probe.stdout)
    assert seen["zoo_onnx"] is None and seen["onnx_entry_points"] == []
    assert Path(seen["zoo"]).is_relative_to(ROOT)  # this checkout's zoo, not another's
    assert "\n" not in seen["OnnxModel"] and "pip install zoo-onnx" in seen["OnnxModel"]

    plugins = _zoo(python, env, "plugins", "--json")
    assert plugins.returncode == 0, plugins.stderr
    doc = json.loads(plugins.stdout)
    assert "onnx" not in {p["name"] for p in doc["plugins"]} and doc["exporters"] == []
    assert {"timm", "strategies"} <= {p["name"] for p in doc["plugins"] if p["status"] == "ok"}

    listed = _zoo(python, env, "list", "test_resnet*", "--provider", "timm", "--json")
    assert listed.returncode == 0, listed.stderr
    listed_refs = {m["reference"] for m in json.loads(listed.stdout)["models"]}
    assert "timm:test_resnet.r160_in1k" in listed_refs

    with running_hub() as hub:  # the pull goes to a real HTTP server on loopback
        hub.add_repo(
            "timm/test_resnet.r160_in1k",
            {"model.safetensors": _weights(), "README.md": b"---\nlicense: apache-2.0\n---\n"},
        )
        env["HF_ENDPOINT"] = hub.url
        pulled = _zoo(python, env, "pull", "timm:test_resnet.r160_in1k")
    assert pulled.returncode == 0, pulled.stderr

    env["HF_HUB_OFFLINE"] = "1"
    tuned = _zoo(
        python, env, "finetune", "timm:test_resnet.r160_in1k", str(data),
        "--strategy", "linear-probe", "--epochs", "1", "--name", "tiny", "--json",
    )  # fmt: skip
    assert tuned.returncode == 0, tuned.stderr
    registry = _zoo(python, env, "registry", "list", "--json")
    assert registry.returncode == 0, registry.stderr
    assert "models:/tiny/1" in registry.stdout

    export = _zoo(python, env, "export", "models:/tiny/1", "--format", "onnx")
    assert export.returncode == 2  # docs/cli.md: bad input or usage
    lines = export.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in export.stderr, export.stderr
    assert "'onnx'" in lines[0] and "pip install zoo-onnx" in lines[0]
    assert "-e plugins/zoo-onnx" in lines[0] and export.stdout == ""


# Run inside the venv: what it sees of zoo_onnx.
PROBE = """
import importlib.metadata, importlib.util, json, zoo
try:
    zoo.OnnxModel
    moved = "resolved"
except AttributeError as exc:
    moved = str(exc)
print(json.dumps({
    "zoo": zoo.__file__,
    "zoo_onnx": None if importlib.util.find_spec("zoo_onnx") is None else "found",
    "onnx_entry_points": [
        e.value for e in importlib.metadata.entry_points(group="zoo") if "onnx" in e.value
    ],
    "OnnxModel": moved,
}))
"""
