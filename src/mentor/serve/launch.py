"""Moved to :mod:`mentor.generation.server` (the one way to launch a local server); re-exported
so that older imports keep working."""

from mentor.generation.server import ServerProcess, free_port

__all__ = ["ServerProcess", "free_port"]
