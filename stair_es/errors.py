"""Errors that reach a person as one actionable line.

Every error the library raises on purpose derives from :class:`StairError`; the CLI prints
``error: <message>`` and exits with the error's ``exit_code`` so scripts can tell failures apart.
"""

from __future__ import annotations


class StairError(Exception):
    """Base class: the message is one line that says what failed and what to do."""

    exit_code = 1


class UsageError(StairError):
    """Bad arguments or input the user can fix."""

    exit_code = 2


class EngineError(StairError):
    """The search engine is unreachable, refused a request, or is the wrong kind/version.

    ``status`` is the HTTP status when the engine answered (None: no answer), ``reason`` its own words.
    """

    exit_code = 3
    status: int | None = None
    reason: str | None = None

    def __init__(self, message: str = "", *, status: int | None = None, reason: str | None = None) -> None:
        super().__init__(message)
        if status is not None:  # a subclass may fix its own (IndexNotFoundError: 404)
            self.status = status
        if reason is not None:
            self.reason = reason


class EngineRejectedInput(EngineError):
    """The engine refused (HTTP 400) a request built from the user's input, e.g. a filter on a
    number with a word, or an offset past the result window: the input needs fixing."""

    exit_code = 2


class ProvisionError(StairError):
    """The local engine could not be downloaded, assembled, started or stopped."""

    exit_code = 4


class ModelError(StairError):
    """A model directory or exported model is missing, corrupt, or does not match the index."""

    exit_code = 5


class DataError(StairError, ValueError):
    """Input data that cannot be used (a corrupt file, a malformed record): not a usage mistake.
    Also a ValueError, so callers that caught ValueError for bad data keep working."""


class InvalidArgument(UsageError, ValueError):
    """A library argument outside what the function accepts (a mode name, a negative size, arrays
    of different lengths). Also a ValueError, as Python code calling a library expects."""


class DocumentRejected(DataError):
    """One document cannot be indexed (malformed or no storable token): it is skipped and its
    reason recorded while the run goes on."""


class MissingDependencyError(StairError):
    """An optional dependency is not installed; the message carries the exact pip command."""

    exit_code = 6


def require(module: str, extra: str, purpose: str):
    """Import an optional module or raise a one-line error with the exact install hint."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise MissingDependencyError(
            f"{purpose} needs the '{module}' package: pip install \"stair-es[{extra}]\" ({exc})"
        ) from exc
