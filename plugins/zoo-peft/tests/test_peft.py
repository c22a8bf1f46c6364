"""zoo-peft's strategies on a tiny ViT and a tiny ResNet (timm's test models): only the
adapters (or biases) and the head train, and the registered model is the merged one,
exported to ONNX with parity."""

from __future__ import annotations

from pathlib import Path

import torch

from zoo.engine import Callback, Recipe, finetune

FAST = {"random_init": True, "image_size": 32, "batch_size": 8, "workers": 0, "precision": "fp32"}


class Optimizer(Callback):
    def on_phase_start(self, state, phase_index, optimizer) -> None:
        self.names = {id(p): n for n, p in state.model.named_parameters()}
        trained = [p for g in optimizer.param_groups for p in g["params"]]
        self.trained = [self.names[id(p)] for p in trained]
        # the head's parameters by identity: their full names, as the model calls them
        self.head = {self.names[id(p)] for p in state.stages[-1][1].parameters()}
        self.start = {k: v.detach().clone() for k, v in state.model.state_dict().items()}


def test_lora_trains_only_adapters_and_head_and_registers_the_merged_model(images: Path) -> None:
    spy = Optimizer()
    result = finetune(
        Recipe(
            ref="timm:test_vit",
            data=str(images),
            strategy="lora",
            epochs=2,
            lr=1e-2,
            name="vit-lora",
            **FAST,
        ),
        callbacks=[spy],
    )
    adapters = [n for n in spy.trained if "lora_" in n]
    others = [n for n in spy.trained if "lora_" not in n]
    assert adapters and all(".qkv." in n for n in adapters)  # ViT: the attention projections
    assert others and set(others) <= spy.head, set(others) - spy.head  # the head, whole
    from zoo.registry import load_model

    model, version = load_model(result.model_uri)
    keys = set(model.state_dict())
    assert not any("lora_" in k or "base_layer" in k for k in keys)  # merged and unwrapped
    # the merged base weights differ from the start: the adapters' updates are in them
    qkv = next(k for k in keys if k.endswith("qkv.weight"))
    assert not torch.equal(
        model.state_dict()[qkv], spy.start[qkv.replace(".weight", ".base_layer.weight")]
    )
    assert version.lineage["strategy"]["plugin"]["plugin"] == "peft"

    from zoo.cli import run

    assert run(["export", result.model_uri, "--out", str(images.parent / "onnx")]) == 0


def test_bitfit_trains_biases_and_the_head(images: Path) -> None:
    spy = Optimizer()
    result = finetune(
        Recipe(ref="timm:test_resnet", data=str(images), strategy="bitfit", epochs=1, **FAST),
        register=False,
        callbacks=[spy],
    )
    assert spy.trained and all(n.endswith("bias") or n in spy.head for n in spy.trained)
    after = torch.load(Path(result.run_dir) / "final.pt", weights_only=True)["model"]
    changed = {k for k, v in spy.start.items() if not torch.equal(v, after[k])}
    weights = {k for k in changed if k.endswith("weight") and not k.startswith("fc.")}
    assert not weights, weights  # no body weight moved (BatchNorm statistics neither)
    assert any(k.endswith("bias") and not k.startswith("fc.") for k in changed)
