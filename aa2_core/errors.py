"""Errors the pack raises on purpose: each one says what was wrong and what was expected."""


class AA2Error(ValueError):
    """Bad input or configuration that the user can fix."""


class CheckpointError(AA2Error):
    """A weight file that is missing, unreadable, or not what the loader expected."""


def describe_keys(keys, limit=8):
    """A short, readable listing of state-dict keys for error messages."""
    keys = sorted(keys)
    shown = ", ".join(keys[:limit])
    more = f" (+{len(keys) - limit} more)" if len(keys) > limit else ""
    return shown + more
