"""Teacher reference trajectories (SPEC stage 1): backends (program, OpenAI-compatible endpoint,
local transformers) and the resumable, filtering generation loop behind ``mentor teach``.

Heavy backends are imported lazily: ``from mentor.teacher.openai_backend import OpenAIChat``."""

from mentor.teacher.base import Teacher, TeacherOutput
from mentor.teacher.generate import TeachSummary, build_reference, generate_references, rejected_path, summary_path
from mentor.teacher.program import ProgramTeacher, plan_messages

__all__ = [
    "ProgramTeacher",
    "Teacher",
    "TeacherOutput",
    "TeachSummary",
    "build_reference",
    "generate_references",
    "plan_messages",
    "rejected_path",
    "summary_path",
]
