"""The two kinds of error a run can end with, kept apart so that each is reported for what it is.

:class:`DataError` is the user's: a file of their data set that cannot be read. It is a ``ValueError``, which the
command line reports in one line as a user error. :class:`TrainingError` is ours: anything else that goes wrong
inside the training loop (a library refusing an augmentation, a shape mismatch) is not a problem with the user's
input, and the command line reports it as an internal error, with its cause.
"""

__all__ = ['DataError', 'TrainingError']


class DataError(ValueError):
    """A sample of the user's data that cannot be read or decoded; the message names the file."""


class TrainingError(RuntimeError):
    """An unexpected error inside the training loop; ``__cause__`` is the original exception."""
