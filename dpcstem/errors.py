"""The dpcstem error family.

Every error a user can cause derives from :class:`DPCError`; its message names the file,
dataset, option or field, the value that is wrong and what would be right. The command line
prints that message on one line and exits with status 2.
"""


class DPCError(Exception):
    """Base class of every error caused by what a user gave dpcstem."""


class InputDataError(DPCError, ValueError):
    """The data arrays are unusable: wrong shape, count, dtype, or no valid pixel."""


class CalibrationError(DPCError, ValueError):
    """A calibration value is absent, out of range or inconsistent with another."""


class UnreadableFileError(DPCError, OSError):
    """A file is missing, truncated, corrupt or not of the kind its name says."""


class MissingMetadataError(DPCError, KeyError):
    """A file lacks something the computation needs (a segment image, a calibration)."""

    def __str__(self):  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class OutputExistsError(DPCError, FileExistsError):
    """An output file exists and replacing it was not asked for."""


class InsufficientMemoryError(DPCError, MemoryError):
    """A computation would need more memory than the machine has free."""


class OutputError(DPCError, OSError):
    """An output cannot be written: the disk is full, the filesystem refuses it."""
