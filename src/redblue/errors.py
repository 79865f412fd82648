"""Errors a user can fix.

Every error raised for bad input derives from :class:`RedblueError` and says
*what* was wrong, *where* (file and line, argument name) and *how to fix it*.
The CLI prints these without a traceback and exits non-zero.
"""

from __future__ import annotations


class RedblueError(Exception):
    """Base class for errors caused by input the user can correct."""

    def __init__(self, what: str, *, where: str | None = None, fix: str | None = None) -> None:
        self.what = what
        self.where = where
        self.fix = fix
        super().__init__(str(self))

    def __str__(self) -> str:
        text = f"{self.where}: {self.what}" if self.where else self.what
        if self.fix:
            text += f"\n  how to fix: {self.fix}"
        return text


class DataError(RedblueError):
    """A prompt file or dataset could not be read as a prompt set."""


class ModelError(RedblueError):
    """A model could not be found, loaded or used."""


class ArchitectureError(ModelError):
    """A model's architecture is not in the ArchSpec table."""


class ConfigError(RedblueError):
    """A setting or configuration file is invalid."""
