"""User-facing errors.

Every problem a user can fix (bad file, bad config, missing data, corrupt
checkpoint) raises a subclass of :class:`EmuDglError` whose message is one line
that names the problem and the fix. The CLI prints that line and exits 2, with
no traceback.
"""

from __future__ import annotations

import reprlib


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


class FileError(EmuDglError):
    """A file cannot be read or written safely: a link or FIFO where a file belongs, a full
    or read-only disk, missing permissions."""


class DivergenceError(EmuDglError):
    """Training produced a non-finite loss or weights; the last finite checkpoint is kept."""


class EmuDglWarning(UserWarning):
    """Something worth a user's attention that does not stop the work (printed as one line)."""


#: Bounds of :func:`shown`: a value quoted in a message is cut to a few items and levels,
#: however large it is (a YAML alias bomb expands to billions of items).
_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxlist, _REPR.maxtuple, _REPR.maxdict, _REPR.maxset = 3, 6, 6, 6, 6
_REPR.maxstring, _REPR.maxother, _REPR.maxlong = 80, 80, 40


def shown(value: object, limit: int = 120) -> str:
    """``repr(value)`` bounded in size and time, for quoting user values in one-line messages."""
    text = _REPR.repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
