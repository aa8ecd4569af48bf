"""Errors the host turns into a one-line message and an exit code."""

from __future__ import annotations


class MdmError(Exception):
    """A failure the user can act on: shown as one line, exit code 1."""

    exit_code = 1
    retryable = False


class UsageError(MdmError):
    """Bad command-line arguments or input files: exit code 2."""

    exit_code = 2


class NotFound(UsageError):
    """A name or id given (an account, an asset, a filter's value) names nothing here: exit code
    2 as any bad input, the web answers 404. The message says how to list the valid ones."""


class ConfigError(MdmError):
    """The configuration is malformed: names the file and the key."""

    exit_code = 2


class PluginError(MdmError):
    """A plugin is unknown, broken or misbehaving at start-up: names the plugin."""

    exit_code = 1


class Unavailable(MdmError):
    """Something this needs is not loaded in this process (a disabled plugin). A subscriber
    that raises it keeps its event: it is delivered again when the host starts next."""


class Conflict(MdmError):
    """The request conflicts with the current state (a sync running, a location already an
    account): the web answers 409. Mixed in first beside another error, it keeps that one's exit code."""


class TemporaryError(MdmError):
    """A failure that may go away by itself (a service unreachable or busy): retry later."""

    retryable = True


def one_line(text: object) -> str:
    """Any text on one line: runs of white space, line breaks included, become one space."""
    return " ".join(str(text).split())


def told(exc: BaseException) -> str:
    """The one line a user is told of a failure: an :class:`MdmError`'s own message (written for
    them, its class name says nothing more), anything else as :func:`describe` gives it."""
    from mdm_core.db.errors import is_database_error

    if isinstance(exc, MdmError) and not is_database_error(exc) and str(exc):
        return one_line(str(exc))
    return describe(exc)


def describe(exc: BaseException) -> str:
    """``Type: message`` on one line, for logs and recorded failures; a database error is told
    without its SQL and parameters (:mod:`mdm_core.db.errors`)."""
    from mdm_core.db.errors import is_database_error, safe_text

    if is_database_error(exc):
        return one_line(f"{type(exc).__name__}: {safe_text(exc)}")
    return one_line(f"{type(exc).__name__}: {exc}")
