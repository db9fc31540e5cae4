"""User-facing errors.

Every problem a user can fix (bad file, bad config, missing data, corrupt
checkpoint) raises a subclass of :class:`EmuDglError` whose message is one line
that names the problem and the fix. The CLI prints that line and exits 2, with
no traceback.
"""

from __future__ import annotations


class EmuDglError(Exception):
    """Base class of errors that the CLI reports as a single line."""

    def __str__(self) -> str:
        # User text quoted in a message (a --set value, a file name) may hold line breaks;
        # they are shown escaped so the message stays one line.
        return super().__str__().replace("\r", "\\r").replace("\n", "\\n")


class DataError(EmuDglError):
    """A dataset is missing, malformed, or failed to download or verify."""


class ConfigError(EmuDglError):
    """A config key is unknown or a value is impossible."""


class CheckpointError(EmuDglError):
    """A checkpoint is missing, truncated, or not an emu-dgl checkpoint."""


class RunError(EmuDglError):
    """A run directory is in use, cannot be written, or cannot resume with the requested config."""


class DivergenceError(EmuDglError):
    """Training produced a non-finite loss or weights; the last finite checkpoint is kept."""


class EmuDglWarning(UserWarning):
    """Something worth a user's attention that does not stop the work (printed as one line)."""
