"""Tasks, registered by name: math, qa (retrieval QA) and bfcl. See ``mentor.tasks.base`` for
what a task declares; ``register(MyTask())`` adds one."""

from mentor.tasks.base import (
    Benchmark,
    Item,
    RunOptions,
    Task,
    all_tasks,
    get_task,
    load_jsonl_benchmark,
    prompt_text,
    register,
    shared_benchmarks_dir,
    unregister,
)
from mentor.tasks.math import MATH  # isort: skip - registration order is detection order
from mentor.tasks.qa import QA  # isort: skip
from mentor.tasks.bfcl import BFCL  # isort: skip

__all__ = [
    "BFCL",
    "MATH",
    "QA",
    "Benchmark",
    "Item",
    "RunOptions",
    "Task",
    "all_tasks",
    "get_task",
    "load_jsonl_benchmark",
    "prompt_text",
    "register",
    "shared_benchmarks_dir",
    "unregister",
]
