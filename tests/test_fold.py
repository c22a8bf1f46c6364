"""Batch normalisation folded into its convolution for the cache fills (zoo/engine/fold.py):
the same output, no normalisation left in the pass, the model as it was afterwards, and
nothing folded where folding would change what the pass computes."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
import timm
import torch
from torch import nn

from tests.finetune_helpers import make_images
from zoo.engine import Callback, Recipe, finetune
from zoo.engine.caches import StopForward
from zoo.engine.fold import folded, pairs


def _randomised(model: nn.Module, seed: int = 0) -> nn.Module:
    """Normalisations with statistics and affine parameters far from the identity."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.rand(n, generator=g) - 0.5)
                m.running_var.copy_(torch.rand(n, generator=g) * 2 + 0.3)
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.rand(n, generator=g) - 0.5)
    return model.eval()


def _ops(fn) -> list[str]:
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        fn()
    return [e.name for e in prof.events()]


@pytest.mark.parametrize("name", ["test_efficientnet", "test_resnet"])
def test_a_network_folds_every_normalisation_computes_the_same_and_is_restored(
    name: str,
) -> None:
    # test_efficientnet has timm's BatchNormAct2d, test_resnet plain BatchNorm2d
    model = _randomised(timm.create_model(name, pretrained=False, num_classes=5))
    x = torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    params = {k: p for k, p in model.named_parameters()}
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        want = model(x)
        assert "aten::batch_norm" in _ops(lambda: model(x))
        with folded(model, lambda: model(x)) as count:
            assert count == len(norms) > 0
            got = model(x)
            assert "aten::batch_norm" not in _ops(lambda: model(x))
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4 * float(want.abs().max()))
    after = model.state_dict()
    assert after.keys() == before.keys()
    assert all(torch.equal(after[k], before[k]) for k in before)
    assert all(p is params[k] for k, p in model.named_parameters())
    assert not any("forward" in vars(m) for m in norms)
    assert "aten::batch_norm" in _ops(lambda: model(x))


class ReadTwice(nn.Module):
    """The convolution's output goes to the normalisation and to the sum as well."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return self.bn(y) + y


def test_a_convolution_whose_output_is_also_read_elsewhere_stays_unfolded() -> None:
    model = _randomised(ReadTwice())
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        want = model(x)
        assert pairs(model, lambda: model(x)) == [(model.conv, model.bn)]  # it looks foldable
        with folded(model, lambda: model(x)) as count:
            assert count == 0  # the check on the example refused it
            torch.testing.assert_close(model(x), want)
            assert "aten::batch_norm" in _ops(lambda: model(x))


class Stem(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn = nn.BatchNorm2d(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))


def test_a_normalisation_the_pass_never_reaches_is_not_folded() -> None:
    """A pass that stops at the convolution (a prefix cache ending there) keeps its
    output as it was: the normalisation after it is another stage's."""
    model = _randomised(Stem())
    x = torch.randn(2, 3, 8, 8)
    box: dict[str, torch.Tensor] = {}

    def stop(_m, _a, out) -> None:
        box["out"] = out
        raise StopForward

    def run() -> torch.Tensor:
        with contextlib.suppress(StopForward):
            model(x)
        return box["out"]

    handle = model.conv.register_forward_hook(stop)
    try:
        with torch.no_grad():
            want = run().clone()
            with folded(model, run) as count:
                assert count == 0
                torch.testing.assert_close(run(), want, rtol=0, atol=0)
    finally:
        handle.remove()


def test_an_error_inside_leaves_the_model_as_it_was() -> None:
    model = _randomised(Stem()).train()
    weight, x = model.conv.weight, torch.randn(2, 3, 8, 8)
    with pytest.raises(KeyboardInterrupt), torch.no_grad(), folded(model, lambda: model(x)) as n:
        assert n == 1 and model.conv.weight is not weight and not model.training
        raise KeyboardInterrupt
    assert model.conv.weight is weight and model.conv.bias is not None
    assert "forward" not in vars(model.bn) and model.training


class NormsSeen(Callback):
    """Whether each call of a normalisation of the run's model ran folded (its own
    normalisation replaced) or not."""

    def __init__(self) -> None:
        self.calls: list[bool] = []

    def on_run_start(self, state) -> None:
        _randomised(state.model).train()
        self.norms = [m for m in state.model.modules() if isinstance(m, nn.BatchNorm2d)]
        for m in self.norms:
            m.register_forward_hook(lambda mod, _a, _o: self.calls.append("forward" in vars(mod)))


@pytest.mark.parametrize("strategy", ["linear-probe", "partial"])
def test_the_caches_are_filled_folded_and_the_model_left_as_it_was(
    strategy: str, tmp_path: Path, zoo_home: Path
) -> None:
    """The feature cache (linear probe) and the frozen-prefix cache (partial, its last
    stage trained on the cached output of the others)."""
    images = make_images(tmp_path / "data", classes=2, per_class=10, size=(36, 36))
    seen = NormsSeen()
    recipe = Recipe(
        ref="timm:test_resnet",
        data=str(images),
        strategy=strategy,
        epochs=2,
        unfreeze=1 if strategy == "partial" else None,
        random_init=True,
        image_size=32,
        batch_size=4,
        workers=0,
        precision="fp32",
    )
    finetune(recipe, register=False, callbacks=[seen])
    # the 20 images are 5 batches of 4: every normalisation the pass runs, folded, in each
    below = len(seen.norms) if strategy == "linear-probe" else 1
    assert sum(seen.calls) >= 5 * below
    assert not any("forward" in vars(m) for m in seen.norms)
