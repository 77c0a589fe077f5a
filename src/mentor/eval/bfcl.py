"""Moved to :mod:`mentor.tasks.bfcl` (BFCL is a registered task); re-exported for older imports."""

from mentor.tasks.bfcl import AST_CATEGORIES, BFCLUnavailable, categories, check, decode, load_bfcl, to_tool

__all__ = ["AST_CATEGORIES", "BFCLUnavailable", "categories", "check", "decode", "load_bfcl", "to_tool"]
