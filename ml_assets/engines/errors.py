"""Errors of the engine lanes: each says what was expected, what was found, and how to fix it."""


class EngineError(RuntimeError):
    """An engine lane that cannot start or be reached."""
