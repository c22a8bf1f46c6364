"""``zoo rank``: which backbone transfers best to a dataset, from one forward pass each.

For every reference the engine's own feature cache gives the pooled features of every
image (the head's input: what a linear probe trains on, so a later probe on the same
images reuses them), and optionally the output of the backbone's middle stage; a
transferability metric (a plugin: ``register_metrics``) scores them. Metrics that need
the source model's classifier (LEEP, NCE) get its probabilities by applying the
backbone's original head to the same cached features: no second forward pass.

Every image goes through the forward pass (into the cache a probe reuses), and the
metrics score a stratified subsample of at most ``SCORE_IMAGES`` of them (the one k-NN
always scored), read from the cache: memory stays the same from ten thousand images to
a million.
"""

from __future__ import annotations

import csv
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from zoo.contract.errors import UsageError

__all__ = [
    "DEFAULT_METRICS",
    "SCORE_IMAGES",
    "RankRow",
    "middle_stage",
    "rank",
    "subset_manifest",
]

LAYERS = ("final", "mid")
DEFAULT_METRICS = ("logme", "knn")  # printed side by side; the first orders the rows
SCORE_IMAGES = 10_000  # the metrics score at most this many (zoo.choose.transferability's k-NN cap)


@dataclass(frozen=True)
class RankRow:
    reference: str
    metric: str
    layer: str  # "final" (the head's input) or the middle stage's name
    score: float
    feature_dim: int
    images: int  # the images scored: all of them, or a stratified subsample (SCORE_IMAGES)
    seconds: float
    imagenet_top1: float | None = None  # where the weights' metadata states it
    scores: dict[str, float] = field(default_factory=dict)  # every metric asked for
    of_images: int | None = None  # the images of the data (its forward pass covered them all)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def middle_stage(names: Sequence[str]) -> str:
    """The middle stage below the head, by the backbone's own stage names."""
    body = list(names[:-1])
    if len(body) < 2:
        raise UsageError(f"the backbone has {len(body)} stage(s) below its head: no middle stage")
    return body[(len(body) - 1) // 2]


def subset_manifest(data: str, max_images: int, out_dir: Path) -> str:
    """A CSV of at most ``max_images`` files of ``data``, the same share of each class,
    chosen by content (sha256) so the subset does not depend on the listing order."""
    from zoo.data import data_source_for, list_files
    from zoo.weights.download import sha256_file

    found = data_source_for(data) if Path(data).exists() else None
    if found is not None:
        raise UsageError(
            f"--max-images takes a folder or a CSV; {data} is read by the data source "
            f"'{found[0]}': rank on all of its images (leave --max-images out)"
        )
    listing = list_files(data)
    by_class: dict[int, list[tuple[str, str]]] = {}
    for path, label in zip(listing.paths, listing.labels, strict=True):
        by_class.setdefault(label, []).append((sha256_file(Path(path)), path))
    share = max(1, max_images // max(1, len(by_class)))
    manifest = out_dir / "subset.csv"
    with manifest.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        for label, files in sorted(by_class.items()):
            for _sha, path in sorted(files)[:share]:
                writer.writerow([path, listing.classes[label]])
    return str(manifest)


def kept_manifest(dataset: Any, out_dir: Path) -> str | None:
    """A CSV of the files a check kept (no bad file, one file of each duplicate), so that
    the backbones after the first read checked data and have nothing to say about it
    again; None when a name would not come back from a CSV row as it is, or the images
    came from a data source (then each backbone reads the source again)."""
    if dataset.kind not in ("folder", "csv"):
        return None  # a data source's images are no files a CSV could name
    rows = []
    for sample in dataset.samples:
        label = dataset.classes[sample.label]
        if sample.path != sample.path.strip() or label != label.strip() or not label:
            return None  # read_manifest strips its cells
        rows.append((sample.path, label))
    manifest = out_dir / "checked.csv"
    with manifest.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "label"])
        writer.writerows(rows)
    return str(manifest)


class _Named:
    """A progress bar whose description is given here (``zoo rank`` names the backbone)."""

    def __init__(self, bar: Any, name: Callable[[str], str]) -> None:
        self._bar, self._name = bar, name

    def start(self, description: str, total: float | None, unit: str = "items") -> None:
        self._bar.start(self._name(description), total, unit)

    def advance(self, amount: float) -> None:
        self._bar.advance(amount)

    def finish(self) -> None:
        self._bar.finish()


def _progress_for(ref: str, checked: bool) -> Callable[[], Any]:
    """Progress for one backbone's ``prepare``: its bars name it. Its first bar is the
    data pass (setup.prepare reads the data before anything else): the first backbone's
    checks the data for all of them; a later one's only reads the files that check kept,
    decoding those its input size has not seen yet."""
    from zoo.progress import make_progress

    calls = [0]

    def make() -> Any:
        calls[0] += 1
        bar = make_progress()
        if calls[0] == 1:
            if not checked:
                return bar  # "checking images": once, for every backbone
            return _Named(bar, lambda _: f"{ref}: reading the checked images")
        return _Named(bar, lambda description: f"{ref}: {description}")

    return make


def _source_probabilities(state: Any, features: Any) -> Any:
    """The original classifier's softmax on the cached features, or None without one."""
    import torch

    from zoo.engine.batches import example
    from zoo.engine.features import find_classifier

    described = state.backbone.info
    if not described.num_classes:
        return None
    from zoo.catalog.index import provider_for
    from zoo.contract.refs import parse_ref

    ref = parse_ref(state.recipe.ref)
    original = provider_for(ref).build(ref, num_classes=None, pretrained=True)
    original.model.to(state.rt.device)
    try:
        head = find_classifier(original.model, original.head, example(state))
    except UsageError:
        return None
    with torch.no_grad():
        logits = head(features.to(state.rt.device)).float()
    return torch.softmax(logits, dim=1).cpu().numpy()


def rank(
    data: str,
    refs: Sequence[str],
    *,
    metric: str | Sequence[str] = DEFAULT_METRICS,
    layers: Sequence[str] = ("final",),
    max_images: int | None = None,
    image_size: int | None = None,
    on_row: Callable[[RankRow], None] | None = None,
) -> list[RankRow]:
    """Score every reference on ``data`` by each metric; rows sorted best first (per
    layer) by the first metric, which ``metric``/``score`` name."""
    import torch

    from zoo.choose.transferability import stratified_subsample
    from zoo.contract.plugins import get_plugin_manager
    from zoo.engine import Recipe
    from zoo.engine.features import head_features, stage_features
    from zoo.engine.setup import prepare

    names = [metric] if isinstance(metric, str) else list(metric)
    installed = get_plugin_manager().metrics()
    for name in names:
        if name not in installed:
            known = ", ".join(sorted(installed)) or "none installed"
            raise UsageError(f"no metric '{name}' (known: {known}); see `zoo plugins`")
    if not names:
        raise UsageError("give at least one metric to rank by")
    scorers = {name: installed[name] for name in names}
    unknown = [layer for layer in layers if layer not in LAYERS]
    if unknown:
        raise UsageError(f"--layers takes final and/or mid, got {', '.join(unknown)}")
    if not refs:
        raise UsageError("give at least one backbone reference to rank")
    rows: list[RankRow] = []
    with tempfile.TemporaryDirectory(prefix="zoo-rank-") as tmp:
        source = subset_manifest(data, max_images, Path(tmp)) if max_images else data
        checked: str | None = None  # the data is checked once, with the first backbone
        for ref in refs:
            t0 = time.perf_counter()
            state = prepare(
                Recipe(ref=ref, data=checked or source, image_size=image_size),
                register=False,
                leakage=False,  # nothing trains here
                progress=_progress_for(ref, checked is not None),
            )
            if checked is None:
                checked = kept_manifest(state.data, Path(tmp))
            cached, labels = head_features(state)
            keep = torch.as_tensor(stratified_subsample(labels.numpy(), SCORE_IMAGES))
            x_final, y = cached[keep], labels[keep]  # read from the cache: bounded memory
            probs = None
            sourced = [n for n, m in scorers.items() if getattr(m, "needs_source", False)]
            if sourced:
                probs = _source_probabilities(state, x_final)
                if probs is None:
                    applicable = sorted(
                        n for n, m in installed.items() if not getattr(m, "needs_source", False)
                    )
                    raise UsageError(
                        f"{ref} has no source classifier, which {sourced[0]} needs: use "
                        f"--metric {' or '.join(applicable)}"
                    )
            for layer in layers:
                if layer == "final":
                    x, name = x_final, "final"
                else:
                    name = middle_stage(state.names)
                    stage_rows, _labels = stage_features(state, name)
                    x = stage_rows[keep]
                scores = {
                    n: float(m.score(features=x.numpy(), labels=y.numpy(), source_probs=probs))
                    for n, m in scorers.items()
                }
                row = RankRow(
                    # a registered derivative is named as itself, not by its base model
                    reference=(
                        state.parent.reference
                        if state.parent is not None
                        else state.backbone.info.reference
                    ),
                    metric=names[0],
                    layer=name,
                    score=scores[names[0]],
                    feature_dim=int(x.shape[1]),
                    images=len(y),
                    of_images=len(labels),
                    seconds=time.perf_counter() - t0,
                    imagenet_top1=state.backbone.info.imagenet_top1,
                    scores=scores,
                )
                rows.append(row)
                if on_row is not None:
                    on_row(row)
    order = {layer: i for i, layer in enumerate(layers)}
    return sorted(
        rows, key=lambda r: (order.get("final" if r.layer == "final" else "mid", 0), -r.score)
    )
