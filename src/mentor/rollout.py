"""Moved to :mod:`mentor.generation` (the one tool loop and the generators); re-exported so
that older imports (other branches, notebooks) keep working. New code imports mentor.generation."""

from mentor.generation import Generation, Generator, HFGenerator, Rollout, Sampling  # noqa: F401
from mentor.generation import parse_assistant, pending_calls, rollout, run_tool_calls  # noqa: F401
