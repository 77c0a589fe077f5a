"""The paper's figures as PNG files (matplotlib, Agg backend).

Each function takes plain data (already aggregated by ``mentor.analysis.report``), writes one PNG
and returns its path (with ``keep={}`` the matplotlib figure is kept there as well). When there is nothing to plot, the figure says so in its body (the file is
still a valid PNG) instead of failing.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

DPI = 110

def _save(fig, path: str | os.PathLike, keep: dict[Path, Any] | None = None) -> Path:
    """Write the PNG; with ``keep`` the figure stays open in it (``{path: Figure}``) so that its
    plotted data can be read back (the caller closes it), else it is closed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    if keep is not None:
        keep[path] = fig
    else:
        plt.close(fig)
    return path


def placeholder(path: str | os.PathLike, title: str, reason: str, keep: dict[Path, Any] | None = None) -> Path:
    """A figure that says which data is missing."""
    fig, ax = plt.subplots(figsize=(6.4, 2.6))
    ax.axis("off")
    ax.set_title(title)
    ax.text(0.5, 0.5, f"No data for this figure:\n{reason}", ha="center", va="center", wrap=True, fontsize=10)
    return _save(fig, path, keep)


def tool_effect(path, data: Mapping[str, Mapping[str, tuple[float, float]]], title="Tool effect (Fig. 1a)", keep: dict[Path, Any] | None = None) -> Path:
    """``data[method][benchmark] = (accuracy without tools, with tools)`` (0-1): the teacher
    (LLM) and the students (SLM) side by side, the effect in points above each pair."""
    rows = [(m, b, wo, w) for m, bs in data.items() for b, (wo, w) in bs.items()]
    if not rows:
        return placeholder(path, title, "evaluate a benchmark with and without tools (mentor eval --no-tools)", keep)
    labels = [f"{m}\n{b}" for m, b, _, _ in rows]
    x = range(len(rows))
    fig, ax = plt.subplots(figsize=(max(5.5, 1.3 * len(rows) + 2), 4))
    width = 0.38
    ax.bar([i - width / 2 for i in x], [100 * r[2] for r in rows], width, label="without tools", color="#9bb7d4")
    ax.bar([i + width / 2 for i in x], [100 * r[3] for r in rows], width, label="with tools", color="#1f5a96")
    for i, (_, _, wo, w) in enumerate(rows):
        ax.annotate(f"{100 * (w - wo):+.1f}", (i, 100 * max(w, wo)), ha="center", va="bottom", fontsize=8)
    ax.set_xticks(list(x), labels, fontsize=8)
    ax.set_ylabel("accuracy (%)")
    ax.set_title(title)
    ax.legend(fontsize=8)
    ax.set_ylim(0, max(5.0, 115 * max(max(r[2], r[3]) for r in rows)))
    return _save(fig, path, keep)


def invocation_pattern(path, shares: Mapping[str, Mapping[str, float]], calls: Mapping[str, float], tools: Sequence[str],
                       title="Tool-invocation pattern (Fig. 1b)", keep: dict[Path, Any] | None = None) -> Path:
    """Left: ``shares[method][tool]`` = the tool's share of the method's in-domain math-tool
    calls (%); right: ``calls[method]`` = tool calls per question over its tool-enabled evaluations."""
    if not calls:
        return placeholder(path, title, "needs evaluation results with tools (the teacher's and the students')", keep)
    fig, (left, right) = plt.subplots(1, 2, figsize=(max(9.0, 0.8 * len(tools) + 5), 4.2), gridspec_kw={"width_ratios": [3, 1]})
    if shares:
        width = 0.8 / len(shares)
        for k, (m, share) in enumerate(shares.items()):
            left.bar([i + (k - (len(shares) - 1) / 2) * width for i in range(len(tools))], [share.get(t, 0.0) for t in tools], width, label=m)
        left.legend(fontsize=8)
    else:
        left.text(0.5, 0.5, "no in-domain math tool call", ha="center", va="center", transform=left.transAxes)
    left.set_xticks(range(len(tools)), tools, rotation=40, ha="right", fontsize=8)
    left.set_ylabel("share of in-domain math-tool calls (%)")
    methods = list(calls)
    right.bar(range(len(methods)), [calls[m] for m in methods], color="#1f5a96")
    for i, m in enumerate(methods):
        right.annotate(f"{calls[m]:.2f}", (i, calls[m]), ha="center", va="bottom", fontsize=8)
    right.set_xticks(range(len(methods)), methods, rotation=40, ha="right", fontsize=8)
    right.set_ylabel("tool calls per question")
    fig.suptitle(title)
    return _save(fig, path, keep)


def invalid_calls(path, counts: Mapping[str, tuple[int, int]], title="Invalid tool calls (Fig. 1c)",
                  keep: dict[Path, Any] | None = None) -> Path:
    """``counts[method] = (invalid calls, all calls)`` over its tool-enabled evaluations; the bar
    is the invalid share (%), annotated with the counts (a method without calls shows 0 of 0)."""
    if not counts:
        return placeholder(path, title, "needs evaluation results with tools (the teacher's and the students')", keep)
    methods = list(counts)
    rates = [100 * inv / n if n else 0.0 for inv, n in (counts[m] for m in methods)]
    fig, ax = plt.subplots(figsize=(max(5.0, 1.1 * len(methods) + 2), 4))
    ax.bar(range(len(methods)), rates, color="#b5473a")
    for i, m in enumerate(methods):
        ax.annotate(f"{counts[m][0]}/{counts[m][1]}", (i, rates[i]), ha="center", va="bottom", fontsize=8)
    ax.set_xticks(range(len(methods)), methods, fontsize=8)
    ax.set_ylabel("invalid tool calls (% of calls)")
    ax.set_ylim(0, max(5.0, 1.15 * max(rates)))
    ax.set_title(title)
    return _save(fig, path, keep)


def accuracy_vs_alignment(path, points: Mapping[str, tuple[float, float]], title="Accuracy vs alignment (Fig. 3)", keep: dict[Path, Any] | None = None) -> Path:
    """``points[method] = (alignment score 0-1, accuracy 0-1)``."""
    if not points:
        return placeholder(path, title, "needs a teacher tool distribution (its evaluation, or a references file) and math evaluations with tools", keep)
    fig, ax = plt.subplots(figsize=(5.5, 4.2))
    seen: dict[tuple[float, float], int] = {}
    for m, (a, acc) in points.items():
        ax.scatter([100 * a], [100 * acc], s=60)
        k = seen.get((round(a, 3), round(acc, 3)), 0)  # stack the labels of coinciding points
        seen[(round(a, 3), round(acc, 3))] = k + 1
        ax.annotate(m, (100 * a, 100 * acc), textcoords="offset points", xytext=(6, 4 + 11 * k), fontsize=9)
    ax.set_xlabel("alignment score (1 - JS distance, %)")
    ax.set_ylabel("in-domain accuracy (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ys = [100 * y for _, y in points.values()]
    ax.set_xlim(-3, 103)
    ax.set_ylim(-3, max(ys) + 10)
    return _save(fig, path, keep)


def tool_difference(path, diffs: Mapping[str, Mapping[str, float]], tools: Sequence[str], title="Tool use minus teacher (Fig. 4)", keep: dict[Path, Any] | None = None) -> Path:
    """``diffs[method][tool]`` = student share of calls minus teacher share, in points."""
    if not diffs:
        return placeholder(path, title, "needs the teacher's tool distribution and student evaluations with tool calls", keep)
    methods = list(diffs)
    fig, ax = plt.subplots(figsize=(max(7, 0.8 * len(tools) + 2), 4.2))
    width = 0.8 / len(methods)
    for k, m in enumerate(methods):
        ax.bar([i + (k - (len(methods) - 1) / 2) * width for i in range(len(tools))], [diffs[m].get(t, 0.0) for t in tools], width, label=m)
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xticks(range(len(tools)), tools, rotation=40, ha="right", fontsize=8)
    ax.set_ylabel("share of calls, student - teacher (points)")
    ax.set_title(title)
    ax.legend(fontsize=8)
    return _save(fig, path, keep)


def calls_per_question(path, dists: Mapping[str, Mapping[str, Sequence[int]]], title="Tool calls per question (Fig. 5)", keep: dict[Path, Any] | None = None) -> Path:
    """``dists[domain][method]`` = number of tool calls of each question (domains: in-domain, out-of-domain)."""
    domains = [d for d in ("in-domain", "out-of-domain") if any(dists.get(d, {}).values())]
    if not domains:
        return placeholder(path, title, "needs evaluation results with tools", keep)
    fig, axes = plt.subplots(1, len(domains), figsize=(5.5 * len(domains), 4), squeeze=False)
    for ax, d in zip(axes[0], domains, strict=True):
        methods = [m for m, v in dists[d].items() if v]
        top = max(max(v) for v in (dists[d][m] for m in methods))
        bins = list(range(0, min(top, 8) + 1))
        width = 0.8 / len(methods)
        for k, m in enumerate(methods):
            v = dists[d][m]
            share = [100 * sum((c == b) if b < 8 else (c >= 8) for c in v) / len(v) for b in bins]
            ax.bar([b + (k - (len(methods) - 1) / 2) * width for b in bins], share, width, label=f"{m} (n={len(v)})")
        ax.set_xticks(bins, [str(b) if b < 8 else "8+" for b in bins])
        ax.set_xlabel("tool calls per question")
        ax.set_ylabel("questions (%)")
        ax.set_title(f"{d}")
        ax.legend(fontsize=8)
    fig.suptitle(title)
    return _save(fig, path, keep)


def over_steps(path, series: Mapping[str, Sequence[tuple[float, float]]], ylabel: str, title: str, keep: dict[Path, Any] | None = None) -> Path:
    """``series[preset] = [(step, value), ...]`` as lines (Fig. 6, 7)."""
    series = {k: v for k, v in series.items() if v}
    if not series:
        return placeholder(path, title, f"no training log with '{ylabel}' per step (metrics.jsonl in a training run directory)", keep)
    fig, ax = plt.subplots(figsize=(6.2, 4))
    for name, pts in series.items():
        pts = sorted(pts)
        ax.plot([p[0] for p in pts], [100 * p[1] for p in pts], marker="o" if len(pts) < 30 else None, ms=3, label=name)
    ax.set_xlabel("training step")
    ax.set_ylabel(f"{ylabel} (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path, keep)
