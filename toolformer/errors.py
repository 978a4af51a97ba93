"""The one error class for mistakes a user can fix (a bad file, a missing run, wrong settings).

The CLI prints a UserError as one line and exits 2; any other exception is a bug and shows its
traceback. Subclasses keep the built-in class they replace (ValueError, FileNotFoundError) so
`except ValueError` in library code and notebooks still catches them.
"""
from __future__ import annotations

import errno


class UserError(Exception):
    """Something the user can fix; the message says what and how."""


class UserValueError(UserError, ValueError):
    """A bad value or record."""


class UserFileNotFound(UserError, FileNotFoundError):
    """An input file or run folder that is not there."""


# OS errors the user fixes on the machine, not in our code
FIXABLE_OS_ERRORS = {errno.ENOSPC: "the disk is full: free some space",
                     errno.EDQUOT: "the disk quota is used up: free some space",
                     errno.EROFS: "the file system is read-only: make the run folder writable",
                     errno.EACCES: "permission denied: make the run folder writable",
                     errno.EPERM: "permission denied: make the run folder writable"}
# a path given where the other kind was expected (--out naming a file, --table a folder)
WRONG_KIND_OS_ERRORS = {errno.EEXIST: "a file is there, where a folder was expected",
                        errno.ENOTDIR: "part of this path is a file, not a folder",
                        errno.EISDIR: "this is a folder: give a file"}


def fixable(err: OSError, path=None) -> UserError | None:
    """The one-line UserError for a disk-full or read-only failure, or for a path of the wrong
    kind (None for other OS errors)."""
    if err.errno in WRONG_KIND_OS_ERRORS:
        return UserError(f"{err.filename or path}: {WRONG_KIND_OS_ERRORS[err.errno]}")
    if err.errno not in FIXABLE_OS_ERRORS:
        return None
    return UserError(f"cannot write {err.filename or path}: {FIXABLE_OS_ERRORS[err.errno]}, then run the "
                     f"same command again to resume")
