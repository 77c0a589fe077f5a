"""Evaluation: benchmarks (math, synthetic, retrieval QA, BFCL), the evaluator and its results."""

from mentor.eval.benchmarks import Benchmark, Item, benchmark_names, load_benchmark
from mentor.eval.runner import evaluate, evaluate_many, macro_summary, make_generator, result_filename, summarize

__all__ = [
    "Benchmark",
    "Item",
    "benchmark_names",
    "evaluate",
    "evaluate_many",
    "load_benchmark",
    "macro_summary",
    "make_generator",
    "result_filename",
    "summarize",
]
