"""Metrics and figures of a run: per-class accuracy, confusion matrix, training curves."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["confusion", "metric_key", "per_class_accuracy", "plot_confusion", "plot_curves"]


def metric_key(text: str) -> str:
    """A string MLflow accepts as (part of) a metric name."""
    return re.sub(r"[^A-Za-z0-9_\-. /]", "_", text)[:200] or "_"


def confusion(labels: Sequence[int], preds: Sequence[int], n: int) -> list[list[int]]:
    """Rows: true class; columns: predicted class."""
    matrix = [[0] * n for _ in range(n)]
    for t, p in zip(labels, preds, strict=True):
        matrix[t][p] += 1
    return matrix


def per_class_accuracy(matrix: list[list[int]], classes: Sequence[str]) -> dict[str, float]:
    out = {}
    for i, name in enumerate(classes):
        total = sum(matrix[i])
        out[name] = matrix[i][i] / total if total else 0.0
    return out


def plot_confusion(matrix: list[list[int]], classes: Sequence[str], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(classes)
    size = max(4.0, 0.5 * n + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    try:
        ax.imshow(matrix, cmap="Blues")
        ax.set_xticks(range(n), labels=list(classes), rotation=45, ha="right")
        ax.set_yticks(range(n), labels=list(classes))
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        top = max((max(row) for row in matrix), default=0)
        if n <= 30:
            for i in range(n):
                for j in range(n):
                    colour = "white" if matrix[i][j] > top / 2 else "black"
                    ax.text(j, i, str(matrix[i][j]), ha="center", va="center", color=colour)
        ax.set_title("validation confusion matrix (best epoch)")
        fig.tight_layout()
        fig.savefig(path, dpi=100)
    finally:
        plt.close(fig)
    return path


def plot_curves(history: Sequence[dict[str, Any]], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(10, 4))
    try:
        for key, label in (("train_loss", "train"), ("val_loss", "validation")):
            loss_ax.plot(epochs, [h.get(key) for h in history], marker="o", label=label)
        for key, label in (("train_accuracy", "train"), ("val_accuracy", "validation")):
            acc_ax.plot(epochs, [h.get(key) for h in history], marker="o", label=label)
        loss_ax.set_title("loss")
        acc_ax.set_title("accuracy")
        for ax in (loss_ax, acc_ax):
            ax.set_xlabel("epoch")
            ax.legend()
            ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(path, dpi=100)
    finally:
        plt.close(fig)
    return path
