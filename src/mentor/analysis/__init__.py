"""Analyses: alignment score, tool statistics (plots and the report build on these)."""

from mentor.analysis.metrics import ToolStats, alignment_score, js_distance, tool_counts, tool_stats

__all__ = ["ToolStats", "alignment_score", "js_distance", "tool_counts", "tool_stats"]
