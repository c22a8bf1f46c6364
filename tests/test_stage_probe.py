"""The multi-stage probe (`--strategy stage-probe`): one linear head on the pooled,
standardised features of every stage, registered, reloaded, exported through the parity
gate and predicted as ONE module (issue 20)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.finetune_helpers import make_images
from zoo import Phase, TrainingPlan, UsageError
from zoo.cli import run
from zoo.engine import Callback, Recipe, finetune

REF = "timm:test_resnet"


class Snapshot(Callback):
    """The run's model when the phase starts (nothing trained yet) and at the end."""

    def on_phase_start(self, state, phase_index, optimizer) -> None:
        self.before = {k: v.detach().clone() for k, v in state.model.state_dict().items()}
        self.names = list(state.names)

    def on_epoch_end(self, state, record) -> None:
        from zoo.engine import evaluate

        self.model = state.model  # finish() loads the registered epoch into this module
        self.record = record  # validated on the cached, standardised features
        self.on_images = evaluate.on_images(state, state.split.val)  # the module on images


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """One stage-probe run, registered as models:/sp/1 and exported to ONNX."""
    mp = pytest.MonkeyPatch()
    home = tmp_path_factory.mktemp("zoo-home")
    mp.setenv("ZOO_HOME", str(home))
    mp.delenv("MLFLOW_TRACKING_URI", raising=False)
    from zoo.contract.plugins import reset_plugin_manager

    reset_plugin_manager()
    data = make_images(tmp_path_factory.mktemp("data"), classes=3, per_class=8, size=(36, 36))
    spy = Snapshot()
    recipe = Recipe(
        ref=REF,
        data=str(data),
        strategy="stage-probe",
        name="sp",
        random_init=True,
        image_size=32,
        batch_size=8,
        workers=0,
        precision="fp32",
    )
    result = finetune(recipe, callbacks=[spy])
    out = tmp_path_factory.mktemp("out") / "sp-onnx"
    export_code = run(["export", "models:/sp/1", "--out", str(out), "--json"])
    yield {"spy": spy, "data": data, "export_code": export_code, "home": home, "result": result}
    mp.undo()
    reset_plugin_manager()


@pytest.fixture
def same_home(trained, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZOO_HOME", str(trained["home"]))


def _images(trained) -> list[Path]:
    return sorted(Path(trained["data"]).rglob("*.png"))


def test_only_the_new_head_trains_and_the_backbone_is_unchanged(trained, same_home) -> None:
    from zoo.registry import load_model

    spy = trained["spy"]
    model, _ = load_model("models:/sp/1")
    after = model.state_dict()
    body = [k for k in spy.before if k.startswith("backbone.")]
    assert body and all(torch.equal(spy.before[k], after[k]) for k in body)
    assert not torch.equal(spy.before["head.weight"], after["head.weight"])  # it trained


def test_the_head_reads_every_stage(trained, same_home) -> None:
    import timm

    from zoo.registry import get_version, load_model

    model, version = load_model("models:/sp/1")
    arch = version.lineage["architecture"]
    assert arch["kind"] == "stage-probe" and arch["stages"] == trained["spy"].names
    assert len(arch["taps"]) == len(arch["stages"]) - 1  # one tap per stage below the head
    # test_resnet's stage outputs are its feature maps (stem, layer1..layer4); the
    # classifier's input is added only where the last stage's output is not already it
    plain = timm.create_model("test_resnet", pretrained=False, num_classes=3)
    expected = sum(info["num_chs"] for info in plain.feature_info)
    if arch["classifier"]:
        expected += plain.num_features
    assert model.head.in_features == arch["num_features"] == expected
    assert tuple(model.mean.shape) == tuple(model.std.shape) == (expected,)
    assert get_version("models:/sp/1").lineage["strategy"]["name"] == "stage-probe"


@pytest.mark.parametrize("ref", [REF, "timm:test_vit"])
def test_the_module_on_images_computes_what_the_head_was_validated_on(
    ref: str, trained, tmp_path: Path
) -> None:
    """Pooling, concatenation and standardisation inside the module match the engine's
    feature caches: the same validation loss from images as from the cached features."""
    if ref == REF:
        spy = trained["spy"]
    else:  # tokens (N, T, C) pooled, and a classifier input that is not a stage output
        spy = Snapshot()
        recipe = Recipe(
            ref=ref,
            data=str(trained["data"]),
            strategy="stage-probe",
            random_init=True,
            image_size=32,
            batch_size=8,
            workers=0,
            precision="fp32",
        )
        finetune(recipe, register=False, callbacks=[spy])
    assert spy.on_images.loss == pytest.approx(spy.record["val_loss"], rel=1e-4, abs=1e-5)
    assert spy.on_images.accuracy == spy.record["val_accuracy"]


def test_reload_gives_the_trained_modules_logits(trained, same_home) -> None:
    from zoo.data import Preprocessing
    from zoo.deploy.images import load_image
    from zoo.registry import load_model

    model, version = load_model("models:/sp/1")
    again, _ = load_model("models:/sp/1")
    prep = Preprocessing.from_dict(dict(version.preprocessing))
    x = torch.stack([torch.from_numpy(load_image(p, prep)) for p in _images(trained)[:6]])
    trained_model = trained["spy"].model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), again(x))
        assert torch.equal(model(x), trained_model(x))


def test_export_passes_the_parity_gate_and_predict_matches_pytorch(
    trained, same_home, capsys
) -> None:
    from zoo.data import Preprocessing
    from zoo.deploy.images import load_image
    from zoo.registry import get_version, load_model

    assert trained["export_code"] == 0
    onnx = get_version("models:/sp.onnx/1")
    assert onnx.tags["zoo.derived_from"] == "models:/sp/1"
    model, version = load_model("models:/sp/1")
    prep = Preprocessing.from_dict(dict(version.preprocessing))
    photos = _images(trained)[:4]
    for photo in photos:
        assert run(["predict", "models:/sp.onnx/1", str(photo), "--json", "--provider", "cpu"]) == 0
        (prediction,) = json.loads(capsys.readouterr().out)["predictions"]
        with torch.no_grad():
            logits = model(torch.from_numpy(load_image(photo, prep))[None])
        want = torch.softmax(logits, dim=1)[0]
        got = {t["index"]: t["probability"] for t in prediction["top"]}
        assert set(got) == {0, 1, 2}
        for index, probability in got.items():
            assert probability == pytest.approx(float(want[index]), abs=1e-4)


@pytest.mark.parametrize(
    ("phases", "message"),
    [
        ((Phase("p", 2, 1e-3, ((2,),), augment=False, features="stages"),), "head_on_features"),
        (
            (Phase("p", 2, 1e-3, ((2,),), head_on_features=True, augment=False, features="x"),),
            "'x'",
        ),
        (
            (
                Phase(
                    "p", 2, 1e-3, ((2,),), head_on_features=True, augment=False, features="stages"
                ),
                Phase("f", 2, 1e-3, ((1, 2),), augment=False),
            ),
            "last phase",
        ),
        (
            (Phase("p", 1, 1.0, ((2,),), head_on_features=True, augment=False, fit="x"),),
            "fit must be",
        ),
        (
            (Phase("p", 3, 1.0, ((2,),), head_on_features=True, augment=False, fit="lbfgs"),),
            "epochs 1",
        ),
        ((Phase("p", 1, 1.0, ((2,),), augment=False, fit="lbfgs"),), "head_on_features must"),
    ],
)
def test_a_plan_misusing_stage_features_is_refused_in_one_line(phases, message: str) -> None:
    from zoo.engine.model import validate_plan

    with pytest.raises(UsageError, match=message) as info:
        validate_plan(TrainingPlan("x", phases), ["stem", "body", "head"], "x")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("classes", [3, 2])
def test_an_lbfgs_fit_registers_the_regression_auto_cross_validates(classes: int) -> None:
    """`fit="lbfgs"` sets the head to the classifier auto's CV scores (evidence.py's
    cv_classifier) fitted on the same rows: the same decisions on every row; with two
    classes the regression's one score becomes the second class's logit."""
    from zoo.engine.evidence import cv_classifier
    from zoo.engine.phases import fit_lbfgs

    g = torch.Generator().manual_seed(0)
    x = torch.randn(60, 12, generator=g)
    y = torch.arange(60) % classes
    x[:, 0] += 1.5 * y  # learnable, not separable
    head = torch.nn.Linear(12, classes + 1)  # one class never seen in training
    fit_lbfgs(head, x, y)
    clf = cv_classifier().fit(x.double().numpy(), y.numpy())
    probe = torch.randn(200, 12, generator=g)
    with torch.no_grad():
        decided = head(probe).argmax(dim=1)
    assert decided.tolist() == clf.predict(probe.double().numpy()).tolist()
    assert classes not in decided.tolist()  # the unseen class is never predicted


def test_stage_probe_is_fitted_once_and_refuses_epochs_and_lr(trained, same_home) -> None:
    from zoo.registry import get_version

    strategy = get_version("models:/sp/1").lineage["strategy"]
    assert strategy["settings"]["fit"] == "lbfgs"
    assert trained["result"].epochs == 1
    code = run(
        ["finetune", REF, str(trained["data"]), "--strategy", "stage-probe", "--epochs", "3"]
    )
    assert code == 2


class StopAfterCheckpoint(Callback):
    """Ctrl-C once the (only) epoch is checkpointed, before registration."""

    def on_epoch_end(self, state, record) -> None:
        raise KeyboardInterrupt


def test_a_run_stopped_before_registration_resumes_into_the_probe(tmp_path: Path) -> None:
    from zoo.contract.errors import Interrupted
    from zoo.registry import load_model

    data = make_images(tmp_path / "data", classes=3, per_class=8, size=(36, 36))
    recipe = Recipe(
        ref=REF,
        data=str(data),
        strategy="stage-probe",
        name="resumed",
        random_init=True,
        image_size=32,
        batch_size=8,
        workers=0,
        precision="fp32",
    )
    with pytest.raises(Interrupted):
        finetune(recipe, callbacks=[StopAfterCheckpoint()])
    spy = Snapshot()
    result = finetune(recipe, callbacks=[spy])  # nothing left to train: registers
    assert result.resumed_from == result.epochs and not hasattr(spy, "before")  # no training
    model, version = load_model(result.model_uri)
    assert version.lineage["architecture"]["kind"] == "stage-probe"
    assert type(model).__name__ == "StageProbe"


def test_fine_tuning_a_registered_probe_continues_from_its_backbone(
    trained, same_home, tmp_path: Path
) -> None:
    from zoo.registry import load_model

    parent, _ = load_model("models:/sp/1")
    spy = Snapshot()
    recipe = Recipe(
        ref="models:/sp/1",
        data=str(trained["data"]),
        strategy="partial",
        unfreeze=1,
        epochs=1,
        batch_size=8,
        workers=0,
        precision="fp32",
    )
    finetune(recipe, register=False, callbacks=[spy])
    inherited = {k: v for k, v in parent.state_dict().items() if k.startswith("backbone.")}
    assert inherited and all(
        torch.equal(spy.before[k.removeprefix("backbone.")], v)
        for k, v in inherited.items()
        if not k.endswith(("fc.weight", "fc.bias"))  # the head starts anew
    )
