"""Registering a model whose weights are not finite: refused before anything reaches
MLflow (no run, no logged model, no version). SIGKILL mid-registration and 8-way
concurrency on both backends: tests/test_registry_robustness.py."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import zoo
from zoo import registry


def _tiny(bad: float | None) -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2)
    )
    if bad is not None:
        with torch.no_grad():
            model[3].weight[0, 1] = bad
    return model


def _register(model: nn.Module) -> registry.RegisteredVersion:
    return registry.register_derivative(
        model,
        name="finite",
        parent="local:tiny-base",
        parent_sha256="ab" * 32,
        parent_license="mit",
        strategy="linear-probe",
        strategy_settings={},
        dataset={"digest": "sha256:" + "cd" * 32, "classes": ["a", "b"]},
        metrics={"val_accuracy": 0.5},
        input_example=torch.zeros(2, 3, 16, 16),
        preprocessing={"input_size": [3, 16, 16]},
        class_names=["a", "b"],
    )


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_weights_are_refused_before_mlflow_is_touched(bad: float) -> None:
    from zoo.registry import store

    with pytest.raises(zoo.IntegrityError, match=r"NaN or infinite.*nothing was registered"):
        _register(_tiny(bad))
    assert not store.embedded_exists()  # not even the store was created


def test_the_same_model_with_finite_weights_registers() -> None:
    from zoo.registry import store

    v = _register(_tiny(None))
    assert v.model_uri == "models:/finite/1"
    runs = store.client().search_runs([store.experiment_id("zoo")])
    assert len(runs) == 1
