"""The one error the replay reports to its user."""
from __future__ import annotations


class ReplayError(Exception):
    """A recording, script, parameter file or topic the replay cannot use; the message names it."""
