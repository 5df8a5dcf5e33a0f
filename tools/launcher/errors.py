"""How `archive up` fails: exit codes and the exceptions that carry them."""

from __future__ import annotations

from typing import Final

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_USAGE: Final = 2
EXIT_NOT_RUNNING: Final = 3


class LaunchError(RuntimeError):
    """Start-up cannot go on; the message says why and where to look."""

    exit_code = EXIT_FAILED


class UsageError(LaunchError):
    """The configuration asks for something that cannot be (exit code 2)."""

    exit_code = EXIT_USAGE


class Interrupted(Exception):
    """SIGINT/SIGTERM arrived while starting."""
