"""``mentor run``: the whole MENTOR pipeline into one run directory.

data -> teacher references (filtered) -> the teacher evaluated as a method (``teacher_eval``,
with ``eval.teacher``) -> Vanilla evaluation -> SFT -> RL methods (Sparse, MENTOR, ... from the
SFT warm start or the base student) -> evaluation of every method in- and out-of-domain ->
report (tables, plots) and ``summary.json``.

Every stage reads and writes plain files in the run directory and is skipped when its
outputs already exist, so re-running a killed run finishes it without redoing completed
stages (training resumes from its last checkpoint; evaluation from the last finished
benchmark file). ``--stages`` runs a subset.

Run directory::

    pipeline.yaml          the resolved config
    run.json               seed, versions, per-stage timings
    stages/<stage>.json    completion marker of each stage (with its timing)
    data/questions.jsonl   the training questions
    references.jsonl       teacher references (+ .rejected.jsonl, .summary.json)
    models/<method>/       training output (checkpoints, metrics.jsonl, final/)
    eval/<method>/*.json   evaluation results (one per benchmark; eval/teacher/ for the teacher)
    report.md, report.html, plots/*.png, summary.json

Modules: ``config`` (the typed, validated config), ``stages`` (``Pipeline``: the stages over
the run directory), ``retrieval`` (the ``eval.retriever`` server the evaluation stages start and
stop), ``cli`` (``mentor run``).
"""

from pathlib import Path

from mentor.pipeline.cli import SUMMARY_KEYS, print_summary, run
from mentor.pipeline.config import (
    BASE_STAGES,
    DEFAULT_CONFIG,
    TAIL_STAGES,
    TEACHER,
    TEACHER_STAGE,
    DataSection,
    EvalSection,
    PipelineConfig,
    PipelineError,
    TrainSection,
    all_stages,
    load_config,
    methods,
    rl_methods,
)
from mentor.pipeline.stages import Pipeline

REPO_ROOT = Path(__file__).resolve().parents[3]  # the repository, for an editable install

__all__ = [
    "BASE_STAGES",
    "DEFAULT_CONFIG",
    "REPO_ROOT",
    "SUMMARY_KEYS",
    "TAIL_STAGES",
    "TEACHER",
    "TEACHER_STAGE",
    "DataSection",
    "EvalSection",
    "Pipeline",
    "PipelineConfig",
    "PipelineError",
    "TrainSection",
    "all_stages",
    "load_config",
    "methods",
    "print_summary",
    "rl_methods",
    "run",
]
