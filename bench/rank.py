"""`zoo rank` on seven real backbones whose order is largely known, against what a linear
probe then reaches, and its cost against plain forward passes and partial fine-tuning.

    python bench/rank.py [--per-class N] [--seeds 0 1 2]

Backbones: EfficientNet-Lite0/1/2 (`effnet-lite:lite0..2`, their ImageNet weights) and
four degraded Lite0s imported with `zoo import`: every weight random
(`local:lite0-random`), and the ImageNet weights kept only up to blocks.2, blocks.4 or
blocks.5 (`local:lite0-upto-blocks2` ...; the later stages random). Data: the 8
openclipart categories (docs/finetune.md), every image or `--per-class` files each.
Prints, from one run:

- each backbone's LogME (`zoo rank`) and the test accuracy `zoo finetune --strategy
  linear-probe` reaches on a 30% test split, for each seed (each seed draws another
  split) and their mean; both orders, and Kendall's tau between LogME and the mean
  (goal: >= 0.8). One split's 500 test images put two probes 2 points apart by chance,
  hence the mean over seeds;
- the seconds `zoo rank` took (fresh feature caches; images decoded beforehand for every
  input size, so neither side pays for decoding) over N plain forward passes: each
  backbone built and run once over the same preprocessed images, no_grad, eval,
  channels_last, bf16 where the CPU has it, as zoo (goal: <= 1.15x);
- the seconds `partial` fine-tuning of the same N takes (its frozen-prefix cache), over
  zoo rank's.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import kendall_tau, setup

REFS = ["effnet-lite:lite0", "effnet-lite:lite1", "effnet-lite:lite2"]


# the degraded Lite0s: (name, the last stage that keeps its ImageNet weights; None: none)
DEGRADED = (
    ("lite0-random", None),
    ("lite0-upto-blocks2", 2),
    ("lite0-upto-blocks4", 4),
    ("lite0-upto-blocks5", 5),
)


def degraded(home: Path) -> list[str]:
    """Lite0s whose transfer is known to be worse: every weight random, and the ImageNet
    weights kept only up to a stage (the rest random), imported with `zoo import`."""
    import torch
    from safetensors.torch import save_file

    from zoo.catalog.build import build_backbone
    from zoo.cli import run
    from zoo.engine.seeding import seed_everything

    seed_everything(0)
    pretrained = build_backbone("effnet-lite:lite0").model.state_dict()
    random_init = build_backbone("timm:tf_efficientnet_lite0", pretrained=False).model.state_dict()
    refs = []
    for name, last in DEGRADED:
        kept = (
            ()
            if last is None
            else ("conv_stem.", "bn1.", *(f"blocks.{i}." for i in range(last + 1)))
        )
        state = {
            k: pretrained[k] if kept and k.startswith(kept) else random_init[k] for k in pretrained
        }
        path = home / f"{name}.safetensors"
        save_file({k: v.contiguous() for k, v in state.items() if torch.is_tensor(v)}, str(path))
        args = ["import", str(path), "--arch", "timm:tf_efficientnet_lite0", "--map-by", "name"]
        if run([*args, "--license", "apache-2.0", "--name", name]) != 0:
            sys.exit(f"zoo import of {name} failed")
        refs.append(f"local:{name}")
    return refs


def plain_forwards(refs: list[str], data: Path) -> float:
    """Seconds of one plain forward pass per backbone over the same preprocessed images."""
    import torch
    from torch.utils.data import DataLoader

    from zoo.catalog.build import build_backbone
    from zoo.catalog.index import describe
    from zoo.data import ImageSamples, Preprocessing, load_dataset
    from zoo.engine.context import _cpu_bf16_fast

    total = 0.0
    for ref in refs:
        t0 = time.perf_counter()
        pre = Preprocessing.from_info(describe(ref))
        dataset = load_dataset(data, resize=pre.resize, interpolation=pre.interpolation)
        model = build_backbone(ref).model.eval().to(memory_format=torch.channels_last)
        samples = ImageSamples(dataset, range(len(dataset.samples)), pre, train=False)
        loader = DataLoader(samples, batch_size=32, num_workers=2)  # type: ignore[arg-type]
        with torch.no_grad(), torch.autocast("cpu", torch.bfloat16, enabled=_cpu_bf16_fast()):
            for x, _y, _i in loader:
                model(pre.normalize(x).contiguous(memory_format=torch.channels_last))
        total += time.perf_counter() - t0
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, default=None, help="default: every image")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    from zoo.testdata import CATEGORIES

    _ref, data = setup(args.per_class, CATEGORIES)
    home = Path(os.environ["ZOO_HOME"])
    refs = REFS + degraded(home.parent)
    from zoo.catalog.index import describe
    from zoo.choose.rank import rank
    from zoo.data import Preprocessing, load_dataset
    from zoo.engine import Recipe, finetune

    for ref in refs:  # decode once for every input size: neither side pays for it
        pre = Preprocessing.from_info(describe(ref))
        load_dataset(data, resize=pre.resize, interpolation=pre.interpolation)
    plain = plain_forwards(refs, data)
    for folder in ("features", "stage-features"):
        shutil.rmtree(home / folder, ignore_errors=True)
    t0 = time.perf_counter()
    rows = rank(str(data), refs)
    t_rank = time.perf_counter() - t0
    canonical = {ref: describe(ref).reference for ref in refs}
    scores = {ref: next(r.score for r in rows if r.reference == canonical[ref]) for ref in refs}
    accuracy, per_seed, t_partial = {}, {}, 0.0
    for ref in refs:  # the probes reuse the features zoo rank cached
        per_seed[ref] = [
            finetune(
                Recipe(ref=ref, data=str(data), test_split=0.3, seed=seed), register=False
            ).metrics["test_accuracy"]
            for seed in args.seeds
        ]
        accuracy[ref] = sum(per_seed[ref]) / len(per_seed[ref])
        t1 = time.perf_counter()
        finetune(Recipe(ref=ref, data=str(data), strategy="partial"), register=False)
        t_partial += time.perf_counter() - t1
    by_rank = sorted(refs, key=scores.__getitem__, reverse=True)
    by_accuracy = sorted(refs, key=accuracy.__getitem__, reverse=True)
    tau = kendall_tau([scores[r] for r in refs], [accuracy[r] for r in refs])
    print()
    per_class = args.per_class or "every image"
    print(f"images: {per_class} per class, 8 openclipart categories; probe: test split 0.3")
    seeds = " ".join(f"seed {seed}" for seed in args.seeds)
    print(f"{'backbone':26s} {'LogME':>8s} {'probe test acc (mean)':>22s}  {seeds}")
    for ref in by_rank:
        each = " ".join(f"{acc:6.3f}" for acc in per_seed[ref])
        print(f"{ref:26s} {scores[ref]:8.4f} {accuracy[ref]:22.3f}  {each}")
    print("order by zoo rank:      ", " > ".join(by_rank))
    print("order by probe accuracy:", " > ".join(by_accuracy))
    print(f"Kendall tau: {tau:.3f} (goal: >= 0.8)")
    n = len(refs)
    print(
        f"zoo rank {t_rank:.1f} s vs {n} plain forward passes {plain:.1f} s: {t_rank / plain:.2f}x"
    )
    print("  (goal: <= 1.15)")
    print(
        f"partial fine-tuning of the same {n}: {t_partial:.1f} s = {t_partial / t_rank:.1f}x rank"
    )
    print("reproduce: python " + shlex.join(["bench/rank.py", *sys.argv[1:]]))


if __name__ == "__main__":
    main()
