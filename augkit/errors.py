"""augkit's one error contract.

Everything a user can get wrong (a file, a row, a field, a parameter, an option, a missing extra)
raises an :class:`AugkitError` whose message names the place and what was expected. The command
line prints that message as one line on stderr and exits with the error's :attr:`~AugkitError.exit_code`
(1; 2 for a bad option, as click does); it does so in one place, :mod:`augkit.cli`. Any other
exception is a bug in augkit and keeps its traceback.

The subclasses keep the built-in base a Python caller would expect (``ValueError`` for bad input,
``OSError`` for an output that cannot be written, ``ImportError`` for a missing extra), so
``except ValueError`` goes on working.

This module imports nothing: every layer can raise these.
"""

from __future__ import annotations

__all__ = ["AugkitError", "InputError", "UsageError"]


class AugkitError(Exception):
    """Base of every error a user can cause or fix; its message is one line that names the file,
    row, field or option and what was expected."""

    exit_code = 1


class InputError(AugkitError, ValueError):
    """Bad input: a data file, a row, a field, a pipeline or scheme file, a parameter."""


class UsageError(InputError):
    """A bad option or combination of options (also in an options file): exit 2, like click's own."""

    exit_code = 2
