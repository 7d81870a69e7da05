"""The error types of guanxi.

Every error a user can cause is one of these: it says *where* (file:line, entity.field,
row) and *why*, in words written for a person. The GraphQL layer maps ``code`` to
``extensions.code``; the CLI prints ``str(error)`` on one line and exits non-zero.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


class GuanxiError(Exception):
    """Base class. ``code`` is the GraphQL ``extensions.code``."""

    code = "INTERNAL"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def __str__(self) -> str:
        return self.message


class ConfigError(GuanxiError):
    """Bad configuration found at start-up: a YAML file, a plugin, an entity description.

    ``where`` is ``file:line`` (or a plugin name) when known; several problems found in one
    pass are kept in ``problems`` so a check can report all of them at once.
    """

    code = "INTERNAL"

    def __init__(
        self, message: str, where: str | None = None, problems: list[ConfigProblem] | None = None
    ) -> None:
        self.where = where
        self.problems = problems or [ConfigProblem(where, message)]
        text = message if not where else f"{where}: {message}"
        if problems and len(problems) > 1:
            text = "\n".join(str(p) for p in problems)
        super().__init__(text)


@dataclass(frozen=True)
class ConfigProblem:
    """One problem in a configuration file; ``where`` is ``file:line`` or None."""

    where: str | None
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}" if self.where else self.message


class PluginError(ConfigError):
    """A plugin is missing, misspells a hook, or needs a plugin that is not loaded."""


class MigrationError(GuanxiError):
    """The database schema differs from the metadata in a way the engine will not change."""

    code = "INTERNAL"

    def __init__(self, message: str, differences: list[str] | None = None) -> None:
        self.differences = differences or []
        super().__init__(message)


@dataclass(frozen=True)
class FieldProblem:
    """One invalid value: ``entity.field`` and why (``row`` set by importers)."""

    entity: str
    field: str | None
    message: str
    row: int | None = None

    @property
    def where(self) -> str:
        return f"{self.entity}.{self.field}" if self.field else self.entity

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


class ValidationError(GuanxiError):
    """A write was refused because values are invalid; nothing was written."""

    code = "VALIDATION"

    def __init__(self, problems: list[FieldProblem] | FieldProblem) -> None:
        if isinstance(problems, FieldProblem):
            problems = [problems]
        self.problems: list[FieldProblem] = list(problems)
        super().__init__("; ".join(str(p) for p in self.problems))

    @property
    def field(self) -> str | None:
        """The first offending field (GraphQL ``extensions.field``)."""
        return self.problems[0].field if self.problems else None


class NotFound(GuanxiError):
    """The record does not exist, or the actor may not see it (the two look the same)."""

    code = "NOT_FOUND"


class PermissionDenied(GuanxiError):
    """The actor may see the record but not do this to it."""

    code = "FORBIDDEN"


class ConflictError(GuanxiError):
    """The write lost a race or would break a uniqueness or reference rule."""

    code = "CONFLICT"


class BusyError(ConflictError):
    """The database stayed busy (a lock wait ran out, a serialization failure): the same
    request may well succeed if tried again; callers retry a bounded number of times."""


class WorkflowError(GuanxiError):
    """A transition cannot be fired: unknown trigger, failed condition, missing field."""

    code = "INVALID_TRANSITION"


class TransitionValuesError(ValidationError, WorkflowError):
    """A transition that may fire but for values: fields its destination requires are
    empty, or its payload is missing or invalid. Code VALIDATION, naming the fields, and
    still a WorkflowError carrying ``details['failures']`` like every refused transition.
    """

    code = "VALIDATION"

    def __init__(self, problems: list[FieldProblem], *, context: str, **details: Any) -> None:
        ValidationError.__init__(self, problems)
        #: what was refused, ``cannot propose Opportunity #7``: the message's prefix
        self.context = context
        self.message = f"{context}: {self.message}"
        self.args = (self.message,)
        self.details = details


class LimitExceeded(GuanxiError):
    """A request went past a configured safety limit."""

    code = "LIMIT_EXCEEDED"


class Unauthenticated(GuanxiError):
    """No valid credentials were given."""

    code = "UNAUTHENTICATED"


__all__ = [
    "ConfigError",
    "ConfigProblem",
    "BusyError",
    "ConflictError",
    "FieldProblem",
    "GuanxiError",
    "LimitExceeded",
    "MigrationError",
    "NotFound",
    "PermissionDenied",
    "PluginError",
    "TransitionValuesError",
    "Unauthenticated",
    "ValidationError",
    "WorkflowError",
]
