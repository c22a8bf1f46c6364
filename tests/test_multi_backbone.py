"""The multi-backbone probe: `zoo finetune REF1,REF2 DATA` trains one head on several
frozen backbones, each fed at its own size and normalisation inside the one model.

timm's tiny test models all take 160 px with one of two normalisations, so a provider
defined here (``sized:``) serves two of them at different sizes and normalisations and
with the licences a test needs; it is registered in this process and unregistered after.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

import zoo
from tests.finetune_helpers import make_images
from zoo.cli import run
from zoo.contract.plugins import get_plugin_manager
from zoo.contract.types import BackboneInfo

# name -> (timm architecture, input size, mean, std, licence)
MODELS = {
    "small": ("test_resnet", 40, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), "mit"),
    "large": ("test_efficientnet", 56, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), "mit"),
    "noncommercial": ("test_resnet", 48, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), "cc-by-nc-4.0"),
}
JOINED = "sized:small,sized:large"


def _sha(name: str) -> str:
    return hashlib.sha256(f"sized weights {name}".encode()).hexdigest()


class Sized:
    """timm's test models at the sizes, normalisations and licences of MODELS."""

    name = "sized"

    def version(self) -> str:
        return "1"

    def _info(self, name: str) -> BackboneInfo:
        arch, px, mean, std, lic = MODELS[name]
        return BackboneInfo(
            reference=f"sized:{name}",
            provider="sized",
            architecture=arch,
            license=lic,
            input_size=(3, px, px),
            mean=mean,
            std=std,
            interpolation="bilinear",
            crop_pct=1.0,
            num_classes=1000,
        )

    def index(self) -> list[BackboneInfo]:
        return [self._info(n) for n in MODELS]

    def describe(self, ref: Any) -> BackboneInfo:
        if ref.name not in MODELS:
            raise zoo.UnknownModelError(f"no sized model {ref.name}")
        return self._info(ref.name)

    def pull(self, ref: Any, **_kw: Any) -> Any:
        raise zoo.UsageError("sized models have nothing to pull")

    def build(
        self, ref: Any, *, num_classes: int | None = None, pretrained: bool = True
    ) -> zoo.ModuleBackbone:
        import timm

        arch = MODELS[ref.name][0]
        kw = {} if num_classes is None else {"num_classes": num_classes}
        model = timm.create_model(arch, pretrained=False, **kw)
        return zoo.timm_style_backbone(
            self._info(ref.name),
            model,
            pretrained=pretrained,
            num_classes=num_classes,
            weights_sha256=_sha(ref.name) if pretrained else None,
        )


class _Plugin:
    @staticmethod
    @zoo.hookimpl
    def register_providers(register: Any) -> None:
        register(Sized())


@pytest.fixture
def sized() -> Iterator[None]:
    pm = get_plugin_manager()
    pm.register(_Plugin, "test-sized")
    try:
        yield
    finally:
        pm.unregister("test-sized")


@pytest.fixture
def images(tmp_path: Path) -> Path:
    return make_images(tmp_path / "data", classes=2, per_class=8, size=(60, 70))


def _zoo(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = run(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_joined_backbones_train_one_head_and_reload_export_and_predict_the_same(
    sized: None, images: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from zoo.catalog.composite import build_composite, describe_joined
    from zoo.catalog.index import describe, provider_for
    from zoo.deploy.images import load_image, preprocessing_from
    from zoo.engine import checkpoint
    from zoo.engine.seeding import seed_everything
    from zoo.registry import get_version, load_model

    code, out, err = _zoo(
        capsys, "finetune", JOINED, str(images), "--name", "both", "--epochs", "2", "--json"
    )
    assert code == 0, err
    run_dir = Path(json.loads(out)["run_dir"])
    version = get_version("models:/both/1")
    # one version with both parents pinned, in the joined order
    parents = version.lineage["parents"]
    assert [p["reference"] for p in parents] == ["sized:small", "sized:large"]
    assert [p["sha256"] for p in parents] == [_sha("small"), _sha("large")]
    assert [p["license"] for p in parents] == ["mit", "mit"]
    assert version.lineage["architecture"]["kind"] == "multi-backbone"
    # the one input: the largest branch's size, scaled to [0, 1]; branches normalise inside
    assert version.preprocessing["input_size"] == [3, 56, 56]
    assert version.preprocessing["mean"] == [0.0, 0.0, 0.0]
    assert version.preprocessing["std"] == [1.0, 1.0, 1.0]

    model, _ = load_model("models:/both/1")
    # the reload is the registered epoch's model: every tensor the run kept, identical
    best = checkpoint.load(run_dir / checkpoint.BEST_FILE)["model"]
    assert set(best) == set(model.state_dict())
    assert all(torch.equal(best[k], v) for k, v in model.state_dict().items())
    spec = describe_joined(JOINED, None, describe=describe)
    assert [b.input_size[1] for b in spec.branches] == [40, 56]
    # the branches see their own size and normalisation: a branch fed by hand agrees
    x = torch.rand(3, 3, 56, 56)
    with torch.no_grad():
        logits = model(x)
        small = model.branches[0].model
        by_hand = small.forward_head(
            small.forward_features(
                (torch.nn.functional.interpolate(x, size=(40, 40), mode="bilinear") - 0.5) / 0.5
            ),
            pre_logits=True,
        )
        assert torch.allclose(model.branches[0](x), by_hand, atol=1e-5)
    # the branches stayed frozen: they hold exactly the weights the run built them with
    seed_everything(0)
    built = build_composite(spec, num_classes=2, provider_for=provider_for).model.state_dict()
    trained = model.state_dict()
    branch_keys = [k for k in trained if k.startswith("branches.")]
    assert branch_keys and all(torch.equal(trained[k], built[k]) for k in branch_keys)
    assert not torch.equal(trained["head.0.weight"], built["head.0.weight"])  # the head trained

    out = tmp_path / "onnx"
    code, _, err = _zoo(capsys, "export", "models:/both/1", "--out", str(out), "--no-benchmark")
    assert code == 0, err
    onnx_file = next(out.glob("*.onnx"))
    picture = next((images / "class0").glob("*.png"))
    pixels = load_image(picture, preprocessing_from(version.preprocessing))
    with torch.no_grad():
        torch_logits = model(torch.from_numpy(pixels)[None]).numpy()
    assert logits.shape == (3, 2)
    done = subprocess.run(
        [sys.executable, "-m", "zoo", "predict", str(onnx_file), str(picture), "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    top = json.loads(done.stdout)["predictions"][0]["top"][0]
    probs = torch.softmax(torch.from_numpy(torch_logits), dim=1)[0]
    assert top["index"] == int(probs.argmax())
    assert abs(top["probability"] - float(probs.max())) < 1e-4
    # served through the registered export's MLflow pyfunc (one graph): the same answer
    import mlflow
    import pandas as pd

    from zoo.registry.store import configure

    configure()
    pyfunc = mlflow.pyfunc.load_model("models:/both.onnx/1")
    row = pyfunc.predict(pd.DataFrame({"image": [picture.read_bytes()]})).to_dict("records")[0]
    assert row["error"] is None and row["class"] == top["class"]
    assert abs(row["probability"] - float(probs.max())) < 1e-4


@pytest.mark.parametrize("strategy", ["full", "partial", "lp-ft"])
def test_a_strategy_that_trains_backbones_is_refused_before_the_data_is_read(
    sized: None, tmp_path: Path, capsys: pytest.CaptureFixture[str], strategy: str
) -> None:
    missing = tmp_path / "no-such-folder"  # reading it would fail with another error
    code, _, err = _zoo(capsys, "finetune", JOINED, str(missing), "--strategy", strategy)
    assert code == 2, err
    lines = [x for x in err.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("zoo: error:"), err
    assert f"--strategy {strategy}" in lines[0] and "linear-probe" in lines[0]
    assert not (tmp_path / "zoo-home" / "runs").exists()


def test_auto_on_joined_backbones_offers_only_the_multi_backbone_probe(
    sized: None, images: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _zoo(
        capsys, "finetune", JOINED, str(images), "--strategy", "auto", "--dry-run", "--json"
    )
    assert code == 0, err
    settings = json.loads(out)["plan"]["settings"]
    assert settings["decision"] == "linear-probe"
    # one backbone would also offer stage-probe and partial trials; frozen branches do not
    assert [row["candidate"] for row in settings["search"]] == ["multi-backbone probe"]


def test_rank_scores_a_joined_reference_on_its_concatenated_features(
    sized: None, images: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _zoo(capsys, "rank", str(images), "sized:small", JOINED, "--json")
    assert code == 0, err
    rows = {r["reference"]: r for r in json.loads(out)["rows"]}
    assert set(rows) == {"sized:small", JOINED}
    # test_resnet's 96 pooled features and test_efficientnet's 256, side by side
    assert rows["sized:small"]["feature_dim"] == 96
    assert rows[JOINED]["feature_dim"] == 96 + 256


def test_a_licence_one_parent_forbids_is_refused_before_any_forward_pass(
    sized: None, images: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """sized:noncommercial is cc-by-nc-4.0: a derivative declared mit is refused (exit 5)
    naming it, before the images are checked or a model is built; with no licence
    declared, the parents' two licences leave nothing to inherit (exit 5 too)."""
    joined = "sized:small,sized:noncommercial"
    for extra in (["--license", "mit"], []):
        code, _, err = _zoo(capsys, "finetune", joined, str(images), *extra)
        assert code == 5, err
        lines = [x for x in err.splitlines() if x.strip()]
        assert len(lines) == 1 and lines[0].startswith("zoo: error:"), err
        assert "cc-by-nc-4.0" in lines[0]
        assert "checking images" not in err
    assert (
        "sized:noncommercial"
        in _zoo(capsys, "finetune", joined, str(images), "--license", "mit")[2]
    )
    assert not list((tmp_path / "zoo-home").rglob("state.pt"))
    assert not (tmp_path / "zoo-home" / "runs").exists()
