"""What the engine reports is true: the split follows the files, a resume never continues
onto other data, duplicates count once, every registered metric comes from the registered
epoch, a test split chooses nothing, a refused licence costs no training, and a finished
recipe is not registered twice (issue: "results you can trust")."""

from __future__ import annotations

import csv
import hashlib
import shutil
from pathlib import Path

import pytest
import torch

import zoo
from tests.finetune_helpers import make_images
from zoo import Phase, TrainingPlan
from zoo.contract.errors import DataError, Interrupted, LicenseError, UsageError
from zoo.contract.plugins import get_plugin_manager
from zoo.data import load_dataset
from zoo.engine import Callback, Recipe, finetune
from zoo.engine.listeners import better as _better

REF = "timm:test_resnet"
FAST = {"random_init": True, "image_size": 32, "batch_size": 8, "workers": 0, "precision": "fp32"}


def _recipe(data: Path | str, strategy: str = "linear-probe", **kw) -> Recipe:
    return Recipe(ref=REF, data=str(data), strategy=strategy, **{**FAST, **kw})


class SplitSpy(Callback):
    """The files each part of the split holds, as the engine itself saw them."""

    def on_phase_start(self, state, phase_index, optimizer) -> None:
        shas = [s.sha256 for s in state.data.samples]
        self.parts = {
            part: sorted(shas[i] for i in getattr(state.split, part))
            for part in ("train", "val", "test")
        }


class StopAfter(Callback):
    """Ctrl-C after the given epoch has been checkpointed."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_epoch_end(self, state, record) -> None:
        if record["epoch"] == self.epoch:
            raise KeyboardInterrupt


def _reversed_csv(folder: Path, out: Path) -> Path:
    rows = [(str(p), p.parent.name) for p in sorted(folder.rglob("*.png"))]
    with out.open("w", newline="") as fh:
        csv.writer(fh).writerows(reversed(rows))
    return out


@pytest.fixture
def images(tmp_path: Path) -> Path:
    return make_images(tmp_path / "data", classes=3, per_class=8, size=(36, 36))


# ----------------------------------------------------------------- 1. same files, same run


@pytest.mark.parametrize("strategy", ["linear-probe", "partial"])
def test_a_folder_and_its_reversed_csv_give_the_same_split_rows_and_metrics(
    images: Path, tmp_path: Path, zoo_home: Path, strategy: str
) -> None:
    kw = {"epochs": 3, "unfreeze": 1} if strategy == "partial" else {"epochs": 10}
    spies = [SplitSpy(), SplitSpy()]
    manifest = _reversed_csv(images, tmp_path / "reversed.csv")
    runs = [
        finetune(_recipe(source, strategy, **kw), register=False, callbacks=[spy])
        for source, spy in zip((images, manifest), spies, strict=True)
    ]
    assert spies[0].parts == spies[1].parts
    assert runs[0].dataset_digest == runs[1].dataset_digest
    # the second run read the first one's cache: its rows must be the same files' rows
    kind = "features" if strategy == "linear-probe" else "prefix"
    assert len([p for p in (zoo_home / kind).iterdir() if (p / "rows.json").is_file()]) == 1
    for a, b in zip(runs[0].history, runs[1].history, strict=True):
        assert a["val_loss"] == b["val_loss"] and a["val_accuracy"] == b["val_accuracy"]
        assert a["train_loss"] == b["train_loss"]


# ----------------------------------------------------- 2. resume only onto the same data


def test_resume_after_the_data_changed_is_refused_and_restart_trains_on_the_new_data(
    images: Path,
) -> None:
    recipe = _recipe(images, "partial", epochs=3, unfreeze=1)
    with pytest.raises(Interrupted, match="checkpoint of epoch 1 is saved"):
        finetune(recipe, register=False, callbacks=[StopAfter(1)])
    extra = make_images(images.parent / "extra", classes=3, per_class=2, size=(36, 36), seed=7)
    for png in extra.rglob("*.png"):
        shutil.copy(png, images / png.parent.name / f"new-{png.name}")
    with pytest.raises(
        UsageError, match=r"the data changed since the checkpoint of epoch 1.*--restart"
    ):
        finetune(recipe, register=False)
    result = finetune(recipe, register=False, restart=True)
    assert result.resumed_from is None and len(result.history) == 3
    assert result.metrics["num_train"] + result.metrics["num_val"] == 30


def test_a_checkpoint_of_the_old_format_names_restart(images: Path, zoo_home: Path) -> None:
    recipe = _recipe(images, "partial", epochs=2, unfreeze=1)
    with pytest.raises(Interrupted):
        finetune(recipe, register=False, callbacks=[StopAfter(1)])
    (state_file,) = (zoo_home / "runs").glob("*/state.pt")
    old = torch.load(state_file, weights_only=True)
    old["format"] = 1
    torch.save(old, state_file)
    with pytest.raises(UsageError, match=r"older zoo.*--restart"):
        finetune(recipe, register=False)


def test_resume_and_restart_together_contradict(images: Path) -> None:
    with pytest.raises(UsageError, match="contradict"):
        finetune(_recipe(images), register=False, resume=True, restart=True)


# ------------------------------------------------------------------------ 3. duplicates


def test_identical_files_count_once_and_are_recorded(images: Path) -> None:
    first = next((images / "class0").glob("*.png"))
    shutil.copy(first, images / "class0" / "copy.png")
    nested = images / "class0" / "more"
    nested.mkdir()
    shutil.copy(first, nested / "again.png")
    dataset = load_dataset(images, resize=32, workers=1)
    assert len(dataset.samples) == 24
    assert len(dataset.duplicates) == 2
    assert dataset.record()["num_duplicates_dropped"] == 2
    # of identical files the one with the smallest relative path is kept, however listed
    kept = min(["class0/copy.png", "class0/more/again.png", f"class0/{first.name}"])
    assert {Path(d.same_as).relative_to(images).as_posix() for d in dataset.duplicates} == {kept}


def test_identical_bytes_under_two_labels_name_both_files(images: Path) -> None:
    first = next((images / "class0").glob("*.png"))
    shutil.copy(first, images / "class1" / "stray.png")
    with pytest.raises(DataError, match=r"class0.*stray\.png.*same image under two labels"):
        load_dataset(images, resize=32, workers=1)


# ------------------------------------------------------------ 4. metrics of one epoch


class GoodThenRuined:
    """Epochs 1-3 learn; then the head is re-initialised and barely trains (epochs 4-5)."""

    name = "good-then-ruined"
    summary = "a test strategy whose best epoch is the first"

    def plan(self, stages, settings):
        head = len(stages) - 1
        return TrainingPlan(
            self.name,
            (
                Phase("learn", 3, 1e-2, (tuple(range(len(stages))),), augment=False),
                Phase("ruin", 2, 1e-9, ((head,),), reinit=(head,), augment=False),
            ),
        )


class _Plugin:
    @staticmethod
    @zoo.hookimpl
    def register_strategies(register) -> None:
        register(GoodThenRuined())


def test_registered_metrics_all_come_from_the_registered_epoch(images: Path) -> None:
    pm = get_plugin_manager()
    pm.register(_Plugin, "test-good-then-ruined")
    try:
        result = finetune(_recipe(images, "good-then-ruined"), register=False)
    finally:
        pm.unregister("test-good-then-ruined")
    assert result.epochs == 5 and result.best_epoch <= 3, result.history
    first, last = result.history[result.best_epoch - 1], result.history[-1]
    m = result.metrics
    assert (m["train_loss"], m["train_accuracy"]) == (first["train_loss"], first["train_accuracy"])
    assert (m["val_loss"], m["val_accuracy"]) == (first["val_loss"], first["val_accuracy"])
    assert (m["last_train_loss"], m["last_val_accuracy"]) == (
        last["train_loss"],
        last["val_accuracy"],
    )
    assert m["train_loss"] != m["last_train_loss"]


def test_ties_in_validation_accuracy_break_on_validation_loss() -> None:
    best = {"epoch": 1, "val_accuracy": 0.75, "val_loss": 0.40}
    assert _better({"val_accuracy": 0.75, "val_loss": 0.30}, best)
    assert not _better({"val_accuracy": 0.75, "val_loss": 0.50}, best)
    assert _better({"val_accuracy": 0.80, "val_loss": 9.0}, best)


# ---------------------------------------------------------------- 5. an honest number


def _score(result, images: Path, shas: list[str]) -> tuple[int, float]:
    """(correct predictions, mean loss) of the model ``finetune`` returned on the files of
    ``shas`` (found here by hashing every file), through the engine's eval preprocessing
    (resize, centre crop, normalise), in float32, with the run's loss (cross-entropy, its
    label smoothing)."""
    import numpy as np

    from zoo.data import Preprocessing, decode_image, eval_crop, resize_for_eval

    pre = Preprocessing.from_info(result.backbone.info, result.recipe["image_size"])
    files = {hashlib.sha256(p.read_bytes()).hexdigest(): p for p in images.rglob("*.png")}
    classes = sorted(folder.name for folder in images.iterdir())
    crops, labels = [], []
    for sha in shas:
        resized = resize_for_eval(decode_image(files[sha]), pre.resize, pre.interpolation)
        crops.append(eval_crop(torch.from_numpy(np.array(resized)).permute(2, 0, 1), pre))
        labels.append(classes.index(files[sha].parent.name))
    y = torch.tensor(labels)
    model = result.backbone.model.eval()
    with torch.no_grad():
        logits = model(pre.normalize(torch.stack(crops))).float()
    loss = torch.nn.functional.cross_entropy(
        logits, y, label_smoothing=result.recipe["label_smoothing"]
    )
    return int((logits.argmax(1) == y).sum()), float(loss)


def test_a_test_split_is_disjoint_chooses_nothing_and_is_reported(images: Path, capsys) -> None:
    spy = SplitSpy()
    result = finetune(_recipe(images, epochs=5, test_split=0.25), register=False, callbacks=[spy])
    # the probe's start says which epochs start, not the last one's number
    assert "zoo: epochs 1-5/5 (probe, on cached features): started" in capsys.readouterr().err
    train, val, test = (set(spy.parts[p]) for p in ("train", "val", "test"))
    assert len(test) == 6 and not (test & train) and not (test & val)
    assert result.metrics["num_test"] == 6
    # the figures reported are the returned model's on exactly the test files
    correct, loss = _score(result, images, spy.parts["test"])
    assert result.metrics["test_accuracy"] == correct / 6
    assert result.metrics["test_loss"] == pytest.approx(loss, rel=1e-6)  # float rounding
    # the probe's passes over cached features are one record: no epoch was chosen
    assert result.chosen_by == "fixed" and len(result.history) == 1


def test_chosen_by_says_what_chose_the_registered_epoch(
    images: Path, tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    from zoo.cli import run
    from zoo.registry import get_version
    from zoo.registry.read import download_artifact

    monkeypatch.setenv("COLUMNS", "400")  # one table row per line
    common = [REF, str(images), "--random-init", "--image-size", "32", "--epochs", "3"]
    common += ["--strategy", "partial", "--unfreeze", "1"]
    assert run(["finetune", *common, "--name", "validated"]) == 0
    assert run(["finetune", *common, "--name", "unvalidated", "--val-split", "0"]) == 0
    capsys.readouterr()
    validated = get_version("models:/validated/1").lineage
    unvalidated = get_version("models:/unvalidated/1").lineage
    assert validated["dataset"]["split"]["chosen_by"] == "validation"
    assert unvalidated["dataset"]["split"]["chosen_by"] == "last-epoch"
    assert unvalidated["dataset"]["split"]["val"] == 0
    assert unvalidated["metrics"]["best_epoch"] == 3  # the last epoch, whatever it scored
    assert "val_accuracy" not in unvalidated["metrics"]  # no figure without a split

    assert run(["registry", "show", "validated"]) == 0
    out = capsys.readouterr().out
    best = int(validated["metrics"]["best_epoch"])
    val = validated["metrics"]["val_accuracy"]
    assert (
        f"validation: registered epoch {best}/3; val_accuracy {val:.4g} chose the registered "
        "epoch, so it flatters" in out
    )
    assert run(["registry", "show", "unvalidated"]) == 0
    out = capsys.readouterr().out
    assert "last-epoch: the registered epoch is the last (3/3); no validation split" in out
    card = download_artifact(get_version("validated"), "README.md", tmp_path).read_text()
    assert f"| val_accuracy | {val:.4f} (chose the registered epoch, so it flatters) |" in card


def test_the_result_line_says_what_chose_the_epoch(images: Path, capsys) -> None:
    from zoo.cli import run

    common = [REF, str(images), "--random-init", "--image-size", "32", "--epochs", "3"]
    common += ["--strategy", "partial", "--unfreeze", "1"]  # three epochs to choose from
    assert run(["finetune", *common, "--name", "plain"]) == 0
    out = capsys.readouterr().out
    assert "chose the best epoch" in out and "add --test-split" in out
    assert run(["finetune", *common, "--name", "held", "--test-split", "0.25"]) == 0
    out = capsys.readouterr().out
    assert "test accuracy" in out and "held out, chose nothing" in out
    from zoo.registry import get_version

    version = get_version("models:/held/1")
    assert "test_accuracy" in version.lineage["metrics"]
    assert version.lineage["dataset"]["split"]["test"] == 6


# ------------------------------------------------------------- 6. licence before training


def test_an_incompatible_licence_is_refused_before_the_data_is_read(
    images: Path, tmp_path: Path, zoo_home: Path, capsys
) -> None:
    from safetensors.torch import save_file

    from zoo.catalog.build import build_backbone
    from zoo.cli import run

    weights = tmp_path / "nc.safetensors"
    save_file(build_backbone(REF, pretrained=False).model.state_dict(), str(weights))
    assert (
        run(["import", str(weights), "--arch", REF, "--license", "cc-by-nc-4.0", "--name", "nc"])
        == 0
    )
    capsys.readouterr()
    code = run(["finetune", "local:nc", str(images), "--license", "mit", "--image-size", "32"])
    err = capsys.readouterr().err
    assert code == LicenseError.exit_code, err
    assert "not compatible" in err and "checking images" not in err and "epoch" not in err
    assert not list((zoo_home / "runs").glob("*/state.pt"))


# --------------------------------------------------------------- 7. nothing pointless


def test_one_class_and_a_class_of_one_image_are_refused(tmp_path: Path) -> None:
    one = make_images(tmp_path / "one", classes=1, per_class=4)
    with pytest.raises(DataError, match="one class"):
        load_dataset(one, resize=32, workers=1)
    lonely = make_images(tmp_path / "lonely", classes=2, per_class=4)
    for png in list((lonely / "class1").glob("*.png"))[1:]:
        png.unlink()
    with pytest.raises(DataError, match=r"class1 \(1\)"):
        load_dataset(lonely, resize=32, workers=1)


def test_a_finished_recipe_is_not_registered_twice_unless_again(images: Path, capsys) -> None:
    from zoo.cli import run
    from zoo.registry import get_version

    cmd = ["finetune", REF, str(images), "--random-init", "--image-size", "32", "--epochs", "2"]
    assert run([*cmd, "--name", "once"]) == 0
    capsys.readouterr()
    assert run([*cmd, "--name", "once"]) == 0
    out = capsys.readouterr().out
    assert "already registered models:/once/1" in out and "--again" in out
    with pytest.raises(Exception, match=r"once/2|not found|no version"):
        get_version("models:/once/2")
    assert run([*cmd, "--name", "once", "--again"]) == 0
    assert "registered models:/once/2" in capsys.readouterr().out
    # new data: the same command trains and registers a new version by itself
    extra = make_images(images.parent / "extra", classes=3, per_class=1, size=(36, 36), seed=9)
    for png in extra.rglob("*.png"):
        shutil.copy(png, images / png.parent.name / f"new-{png.name}")
    assert run([*cmd, "--name", "once"]) == 0
    assert "registered models:/once/3" in capsys.readouterr().out


# ------------------------------------------------------------ plans are checked first


class BadProbe:
    name = "bad-probe"
    summary = "a head-on-features phase that also trains a body stage"

    def plan(self, stages, settings):
        head = len(stages) - 1
        return TrainingPlan(
            self.name,
            (Phase("probe", 1, 1e-3, ((head - 1, head),), head_on_features=True, augment=False),),
        )


def test_an_invalid_plan_is_refused_naming_the_field(images: Path) -> None:
    class Plugin:
        @staticmethod
        @zoo.hookimpl
        def register_strategies(register) -> None:
            register(BadProbe())

    pm = get_plugin_manager()
    pm.register(Plugin, "test-bad-probe")
    try:
        with pytest.raises(UsageError, match=r"head_on_features trains only the head.*layer4"):
            finetune(_recipe(images, "bad-probe"), register=False)
    finally:
        pm.unregister("test-bad-probe")


# --------------------------------------------------------- 9. one split everywhere


def test_export_checks_on_the_engines_own_split_and_never_on_the_test_set(images: Path) -> None:
    from zoo.deploy.check_set import CALIBRATION_IMAGES, _stack, build_check_set
    from zoo.deploy.source import load_source

    spy = SplitSpy()
    recipe = _recipe(images, epochs=2, test_split=0.25, name="exp")
    finetune(recipe, callbacks=[spy])
    dataset = load_dataset(images, resize=32, workers=1)
    index_of = {s.sha256: i for i, s in enumerate(dataset.samples)}
    source = load_source("models:/exp/1")
    check = build_check_set(source, None, say=lambda _m: None)

    def stacked(part: str) -> torch.Tensor:
        rows = [index_of[sha] for sha in spy.parts[part]]
        return _stack(dataset, rows, source.preprocessing)

    assert check.validation is not None and check.calibration is not None
    assert torch.equal(check.validation, stacked("val"))
    train = stacked("train")  # calibration: training images only, the classes in turn
    assert len(check.calibration) == min(len(train), CALIBRATION_IMAGES)
    for image in check.calibration:
        assert any(torch.equal(image, t) for t in train)
    test = stacked("test")
    for image in (*check.validation, *check.calibration):
        assert not any(torch.equal(image, t) for t in test)


def test_a_pass_without_augmentation_on_a_cpu_loads_in_the_process_and_gives_the_same_rows(
    images: Path, tmp_path: Path
) -> None:
    """A cache fill or an evaluation on a CPU crops its decoded arrays in the process
    (worker processes would take the cores its forward pass computes on); training passes
    and a recipe's own `workers` keep their worker processes; the rows are the same."""
    from zoo.engine.batches import image_batches
    from zoo.engine.features import _capture, classifier
    from zoo.engine.setup import prepare

    own = prepare(_recipe(images, workers=None, device="cpu"), register=False)
    own.workers = 2  # what a 2-core machine gets by default
    two = prepare(_recipe(images, workers=2, device="cpu"), register=False)
    loaders = [
        image_batches(state, [0, 1], train=train, batch_size=2, seed=0)
        for state in (own, two)
        for train in (False, True)
    ]
    assert [loader.num_workers for loader in loaders] == [0, 2, 2, 2]
    rows = [
        _capture(s, [classifier(s)], "features", [tmp_path / f"cache{i}"], inputs=True)[0]
        for i, s in enumerate((own, two))
    ]
    assert torch.equal(rows[0].load(), rows[1].load())
