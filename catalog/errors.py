"""Errors a user can act on: one line naming the thing and what to do.

The CLI prints `str(error)` and exits with `exit_code`; anything else that
escapes is a bug and gets a traceback only with --debug.
"""


class CatalogError(Exception):
    """A failure while doing the work (exit code 1)."""

    exit_code = 1


class UsageError(CatalogError):
    """A mistake in what the user asked for (exit code 2)."""

    exit_code = 2


# What Ctrl-C during `catalog sql` leaves behind: said by the command line,
# or by catalog/query.py when the driver does not let go of the query.
QUERY_STOPPED = "the query was stopped; nothing was changed"
