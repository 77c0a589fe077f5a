"""Moved to :mod:`mentor.tasks.bfcl` (BFCL is a registered task) and :mod:`mentor.tasks.bfcl_v4`
(its categories and the official weighted overall); re-exported for older imports."""

from mentor.tasks.bfcl import AST_CATEGORIES, BFCLUnavailable, categories, check, decode, load_bfcl, to_tool
from mentor.tasks.bfcl_v4 import OFFLINE, UNAVAILABLE, WEIGHTS, overall

__all__ = ["AST_CATEGORIES", "OFFLINE", "UNAVAILABLE", "WEIGHTS", "BFCLUnavailable", "categories", "check", "decode",
           "load_bfcl", "overall", "to_tool"]
