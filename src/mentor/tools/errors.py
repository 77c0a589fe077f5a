"""The error every tool layer raises for an invalid call (it becomes an ``ok=False`` observation)."""


class ToolError(ValueError):
    """Raised by a tool implementation for an invalid call (becomes ``ok=False``)."""
