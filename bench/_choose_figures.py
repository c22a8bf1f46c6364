"""The figures of docs/protocol.md from bench/choose.py's raw results (lines to print).

Accuracies are fractions in the results and points (percent) in the differences. A run
that is missing on some seed (not available in this tree, or failed) leaves every figure
that needs it out, and the line says so.
"""

from __future__ import annotations

from collections.abc import Callable
from statistics import mean
from typing import Any

from _common import kendall_tau, paired_interval

GOAL_VS_BEST = -0.5  # auto - best fixed strategy, points, on the mean of the seeds
GOAL_VS_PROBE = -0.5  # auto - linear probe, points, on every seed


def accuracies(runs: dict[str, Any], key: str, seeds: list[int]) -> list[float] | None:
    """Test accuracy of `key` on every seed, or None when any seed has none."""
    per_seed = runs.get(key, {})
    values = [per_seed.get(str(s), {}).get("test_accuracy") for s in seeds]
    return None if any(v is None for v in values) else values  # type: ignore[return-value]


def _why_missing(runs: dict[str, Any], key: str, seeds: list[int]) -> str:
    for s in seeds:
        outcome = runs.get(key, {}).get(str(s))
        if outcome is None:
            return "not run"
        if outcome.get("status") != "ok":
            return f"{outcome.get('status')}: {outcome.get('error')}"
    return "incomplete"


def _difference(label: str, a: list[float], b: list[float]) -> tuple[str, list[float]]:
    diffs = [100 * (x - y) for x, y in zip(a, b, strict=True)]
    m, half = paired_interval(diffs)
    each = ", ".join(f"{d:+.1f}" for d in diffs)
    if half is None:
        return f"  {label}: {m:+.1f} points (one seed: no interval)", diffs
    lo, hi = m - half, m + half
    return f"  {label}: per seed {each}; mean {m:+.1f} +- {half:.1f} [{lo:+.1f}, {hi:+.1f}]", diffs


def set_figures(
    runs: dict[str, Any],
    seeds: list[int],
    fixed: tuple[str, ...],
    multi: str,
    one_backbone: list[str],
) -> list[str]:
    """Per-seed table, the acceptance differences and goals of one set."""
    lines = ["test accuracy (each seed its own split; test images chose nothing):"]
    header = "".join(f"{'seed ' + str(s):>9s}" for s in seeds)
    lines.append(f"  {'run':40s}{header}{'mean':>9s}")
    table: dict[str, list[float]] = {}
    for key in runs:
        values = accuracies(runs, key, seeds)
        if values is None:
            lines.append(f"  {key:40s} {_why_missing(runs, key, seeds)}")
            continue
        table[key] = values
        cells = "".join(f"{v:9.4f}" for v in values)
        lines.append(f"  {key:40s}{cells}{mean(values):9.4f}")
    decisions = [
        f"seed {s}: {runs['auto'][str(s)].get('decision')}"
        for s in seeds
        if runs.get("auto", {}).get(str(s), {}).get("status") == "ok"
    ]
    if decisions:
        lines.append("  auto chose: " + "; ".join(decisions))
    lines.append("differences in points (95% interval: mean +- t(0.975, n-1) * sd / sqrt(n)):")
    available = [k for k in fixed if k in table]
    missing = [k for k in fixed if k not in table]
    if "auto" in table and available:
        best = max(available, key=lambda k: mean(table[k]))
        note = f"; not available, so not compared: {', '.join(missing)}" if missing else ""
        line, diffs = _difference(f"auto - best fixed ({best}{note})", table["auto"], table[best])
        verdict = "met" if round(mean(diffs), 6) >= GOAL_VS_BEST else "MISSED"
        verdict += " (provisional: not every fixed strategy ran)" if missing else ""
        lines += [line, f"    goal: mean >= {GOAL_VS_BEST}: {verdict}"]
    else:
        lines.append("  auto - best fixed: not available (auto or every fixed strategy missing)")
    if "auto" in table and "linear-probe" in table:
        line, diffs = _difference("auto - linear-probe", table["auto"], table["linear-probe"])
        below = [
            f"seed {s}" for s, d in zip(seeds, diffs, strict=True) if round(d, 6) < GOAL_VS_PROBE
        ]
        verdict = "met" if not below else "MISSED on " + ", ".join(below)
        lines += [line, f"    goal: every seed >= {GOAL_VS_PROBE}: {verdict}"]
    probes = [k for k in one_backbone if k in table]
    if probes:
        best_probe = max(probes, key=lambda k: mean(table[k]))
        for key in ("stage-probe", multi):
            if key in table:
                label = f"{key} - best one-backbone probe ({best_probe})"
                lines.append(_difference(label, table[key], table[best_probe])[0])
            else:
                lines.append(f"  {key}: {_why_missing(runs, key, seeds)}")
    return lines


def rank_figures(
    rank: dict[str, Any],
    runs: dict[str, Any],
    candidates: list[str],
    seeds: list[int],
    probe_key: Callable[[str], str],
) -> list[str]:
    """Kendall's tau between each metric and the probes' test accuracy, with both orders."""
    lines = [f"zoo rank over the real candidates ({len(candidates)}), on each training split:"]
    acc = {ref: accuracies(runs, probe_key(ref), seeds) for ref in candidates}
    if any(v is None for v in acc.values()):
        gone = [ref for ref, v in acc.items() if v is None]
        lines.append(f"  no tau: no probe accuracy for {', '.join(gone)}")
        return lines
    mean_acc = {ref: mean(v) for ref, v in acc.items()}  # type: ignore[arg-type]
    for metric, per_seed in rank.items():
        failed = [o for o in per_seed.values() if o.get("status") != "ok"]
        if failed:
            lines.append(f"  {metric}: {failed[0].get('status')}: {failed[0].get('error')}")
            continue
        taus = []
        for i, s in enumerate(seeds):
            scores = per_seed[str(s)]["scores"]
            taus.append(
                kendall_tau([scores[r] for r in candidates], [acc[r][i] for r in candidates])
            )  # type: ignore[index]
        mean_score = {r: mean(per_seed[str(s)]["scores"][r] for s in seeds) for r in candidates}
        tau = kendall_tau([mean_score[r] for r in candidates], [mean_acc[r] for r in candidates])
        each = ", ".join(f"{t:+.2f}" for t in taus)
        lines.append(f"  {metric}: tau of the means {tau:+.3f}; per seed {each}")
        by_metric = sorted(candidates, key=mean_score.__getitem__, reverse=True)
        by_probe = sorted(candidates, key=mean_acc.__getitem__, reverse=True)
        lines.append(
            f"    order by {metric}: " + " > ".join(f"{r} ({mean_score[r]:.4f})" for r in by_metric)
        )
        lines.append(
            "    order by probe test accuracy: "
            + " > ".join(f"{r} ({mean_acc[r]:.4f})" for r in by_probe)
        )
    return lines
