"""The one error class for mistakes a user can fix (a bad file, a missing run, wrong settings).

The CLI prints a UserError as one line and exits 2; any other exception is a bug and shows its
traceback. Subclasses keep the built-in class they replace (ValueError, FileNotFoundError) so
`except ValueError` in library code and notebooks still catches them.
"""
from __future__ import annotations


class UserError(Exception):
    """Something the user can fix; the message says what and how."""


class UserValueError(UserError, ValueError):
    """A bad value or record."""


class UserFileNotFound(UserError, FileNotFoundError):
    """An input file or run folder that is not there."""
