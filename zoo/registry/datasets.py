"""A fine-tune's data as an MLflow dataset, and the versions trained on a given data set.

Every fine-tune run logs its data with MLflow's dataset entity (``MlflowClient.log_inputs``,
what ``mlflow.log_input`` does inside a run): one dataset per data set, whose digest is the
first 32 hex characters of zoo's content digest (MLflow's digest column holds 36
characters), named after the folder or CSV, its source the path, its profile what the
content decides (the full digest, classes, images per class, duplicates left out, files
skipped). The run's split of it (images per part, the split's digest, seed) is in the
input's tags, beside MLflow's context tag ``training``: MLflow keeps one profile per
(name, digest) and links a dataset to a run once, so a part-dependent profile would show
the first run's split for every later run on the same data (docs/registry.md "Datasets").

The registered epoch's metrics are logged (by zoo/engine/tracking.py, once the version
exists) with the dataset and the version's logged model, so
``mlflow.search_logged_models(datasets=[{"dataset_name": ..., "dataset_digest": ...}])``
finds the model, and ``mlflow.search_runs(filter_string="dataset.digest = '...'")`` the run.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zoo.contract.errors import UsageError
from zoo.registry.records import TAG

if TYPE_CHECKING:  # pragma: no cover
    from zoo.data.check import ImageDataset
    from zoo.registry.records import RegisteredVersion

__all__ = [
    "CONTEXT",
    "MLFLOW_DIGEST_CHARS",
    "dataset_input",
    "describe",
    "mlflow_digest",
    "resolve_digest",
    "run_datasets",
    "versions_on",
]

MLFLOW_DIGEST_CHARS = 32
CONTEXT = "training"  # MLflow's context tag of the input: the data the run was trained from
SPLIT_TAGS = {
    "train": "zoo.split.train",
    "validation": "zoo.split.validation",
    "test": "zoo.split.test",
}
_HEX = re.compile(r"[0-9a-f]+")
_MIN_PREFIX = 4


def mlflow_digest(digest: str) -> str:
    """MLflow's digest of zoo's ``sha256:<64 hex>``: its first 32 hex characters."""
    return digest.split(":", 1)[-1][:MLFLOW_DIGEST_CHARS]


def dataset_name(source: str | Path) -> str:
    """The dataset's name in MLflow: the folder's (or the CSV file's) name."""
    path = Path(source)
    return path.stem if path.suffix.lower() == ".csv" else path.name or str(path)


def profile(data: ImageDataset) -> dict[str, Any]:
    """What the content decides, so it holds for every run on the same data."""
    return {
        "zoo.dataset_digest": data.digest,
        "classes": list(data.classes),
        "counts": data.counts(),
        "num_images": len(data.samples),
        "duplicates_left_out": len(data.duplicates),
        "skipped_files": len(data.bad),
    }


def dataset_input(
    data: ImageDataset, source: str | Path, split: Mapping[str, int], split_digest: str, seed: int
) -> Any:
    """The ``mlflow.entities.DatasetInput`` of a run trained on ``data``: an
    :class:`mlflow.data.meta_dataset.MetaDataset` with zoo's profile, tagged with MLflow's
    context and the run's split (``split``: images per part, as split.json names them)."""
    import warnings

    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.entities import DatasetInput, InputTag
    from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

    class ZooImages(MetaDataset):
        """A labelled image folder or CSV: metadata and a profile, no rows."""

        def __init__(self, profile: dict[str, Any], **kwargs: Any) -> None:
            self._profile = profile
            super().__init__(**kwargs)

        @property
        def profile(self) -> Any:
            return self._profile

        def to_dict(self) -> dict[str, str]:
            return {**super().to_dict(), "profile": json.dumps(self._profile, sort_keys=True)}

    where = str(Path(source).expanduser().resolve())
    with warnings.catch_warnings():  # a local path: every local artifact source claims it
        warnings.simplefilter("ignore", UserWarning)
        mlflow_source = resolve_dataset_source(where)
    ds = ZooImages(
        profile(data),
        source=mlflow_source,
        name=dataset_name(where),
        digest=mlflow_digest(data.digest),
    )
    tags = {
        MLFLOW_DATASET_CONTEXT: CONTEXT,
        TAG.DATASET_DIGEST: data.digest,
        "zoo.split_digest": split_digest,
        "zoo.split.seed": str(seed),
        **{SPLIT_TAGS[part]: str(n) for part, n in split.items() if part in SPLIT_TAGS},
    }
    return DatasetInput(ds._to_mlflow_entity(), [InputTag(k, v) for k, v in tags.items()])


def run_datasets(run_id: str | None) -> list[dict[str, Any]]:
    """The datasets a run logged (name, digest, context, source, profile, tags); an empty
    list for a run without any (versions registered before datasets were logged) or gone."""
    if not run_id:
        return []
    from mlflow.exceptions import MlflowException

    from zoo.registry.store import client

    try:
        run = client().get_run(run_id)
    except MlflowException:
        return []
    out = []
    for di in run.inputs.dataset_inputs:
        d = di.dataset
        tags = {t.key: t.value for t in di.tags or ()}
        try:
            source = json.loads(d.source).get("uri", d.source)
        except (ValueError, AttributeError):
            source = d.source
        try:
            prof = json.loads(d.profile) if d.profile else {}
        except ValueError:
            prof = {}
        out.append(
            {
                "name": d.name,
                "digest": d.digest,
                "context": tags.pop("mlflow.data.context", None),
                "source_type": d.source_type,
                "source": source,
                "profile": prof,
                "tags": tags,
            }
        )
    return out


def describe(d: Mapping[str, Any]) -> str:
    """One line of ``zoo registry show`` for a dataset of :func:`run_datasets`."""
    tags = d.get("tags") or {}
    parts = [f"{p} {tags[t]}" for p, t in SPLIT_TAGS.items() if t in tags]
    split = f", split {' / '.join(parts)}" if parts else ""
    return (
        f"{d['name']} ({d['context'] or 'no context'}) digest {d['digest']}{split}: {d['source']}"
    )


def _hex_of(query: str) -> str | None:
    """The hex of a digest the user wrote (``sha256:HEX``, or bare HEX), or None."""
    text = query.strip().lower()
    if text.startswith("sha256:"):
        text = text[len("sha256:") :]
    return text if _HEX.fullmatch(text) and _MIN_PREFIX <= len(text) <= 64 else None


def resolve_digest(query: str, known: Iterable[str], *, digest_of: Any) -> str | None:
    """The full ``sha256:`` digest that ``query`` names: a digest, its 32-hex MLflow form
    or a prefix unique among ``known`` digests, or a data folder or CSV
    (``digest_of(path)``, as a fine-tune computes it). None: a digest no version has.
    Anything else is refused in one line."""
    looks_like_digest = query.strip().lower().startswith("sha256:")
    if not looks_like_digest and Path(query).expanduser().exists():
        return str(digest_of(Path(query).expanduser()))
    hex_ = _hex_of(query)
    if hex_ is None:
        raise UsageError(
            f"--dataset '{query}' is neither a data set's digest (sha256:HEX, its 32-hex "
            f"MLflow form or a prefix of at least {_MIN_PREFIX} hex characters) nor an "
            "existing data folder or CSV: pass one of those"
        )
    if len(hex_) == 64:
        return f"sha256:{hex_}"
    matches = sorted({d for d in known if d.split(":", 1)[-1].startswith(hex_)})
    if len(matches) > 1:
        shown = ", ".join(m[: len("sha256:") + 12] + "..." for m in matches[:3])
        raise UsageError(
            f"--dataset {query} names {len(matches)} data sets ({shown}): give more of the digest"
        )
    return matches[0] if matches else None


def versions_on(
    versions: Sequence[RegisteredVersion], query: str, *, digest_of: Any
) -> tuple[str | None, list[RegisteredVersion]]:
    """The digest ``query`` names and the ``versions`` trained on it (by their
    ``zoo.dataset_digest`` tag, which every fine-tune carries, before datasets too)."""
    known = [v.tags[TAG.DATASET_DIGEST] for v in versions if v.tags.get(TAG.DATASET_DIGEST)]
    digest = resolve_digest(query, known, digest_of=digest_of)
    if digest is None:
        return None, []
    return digest, [v for v in versions if v.tags.get(TAG.DATASET_DIGEST) == digest]
