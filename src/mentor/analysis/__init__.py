"""Analyses: alignment score, tool statistics, plots and the report."""

from mentor.analysis.metrics import ToolStats, alignment_score, js_distance, tool_counts, tool_stats
from mentor.analysis.report import build_report, collect_runs

__all__ = ["ToolStats", "alignment_score", "build_report", "collect_runs", "js_distance", "tool_counts", "tool_stats"]
