"""Evaluation: benchmarks (resolved through the task registry), the evaluator and its results."""

from mentor.eval.benchmarks import Benchmark, Item, benchmark_names, load_benchmark
from mentor.eval.runner import evaluate, macro_summary, result_filename, result_name
from mentor.generation import make_generator

__all__ = [
    "Benchmark",
    "Item",
    "benchmark_names",
    "evaluate",
    "load_benchmark",
    "macro_summary",
    "make_generator",
    "result_filename",
    "result_name",
]
