"""Errors as GraphQL answers: ``extensions.code`` always, ``extensions.field`` for bad input.

Engine errors carry their code (errors.py); an unexpected exception becomes INTERNAL with
an error id the server log prints beside the traceback, so a user can quote it and the
operator can find it - never the traceback itself.
"""

from __future__ import annotations

import functools
import inspect
import logging
import uuid
from collections.abc import Callable, Iterator
from typing import Any

from strawberry.extensions import SchemaExtension

from graphql import GraphQLError
from guanxi.engine import GuanxiError, ValidationError, WorkflowError

from .types import camel

log = logging.getLogger("guanxi.graphql")
CODES = {
    "UNAUTHENTICATED",
    "FORBIDDEN",
    "NOT_FOUND",
    "VALIDATION",
    "CONFLICT",
    "INVALID_TRANSITION",
    "LIMIT_EXCEEDED",
    "INTERNAL",
}
#: graphql-core and strawberry messages of the safety limits
LIMIT_MARKERS = (
    "exceeds maximum operation depth",
    "aliases found. Allowed:",
    "Document contains more than",  # ... N tokens. Parsing aborted.
    "introspection has been disabled",
)


def to_graphql_error(exc: GuanxiError) -> GraphQLError:
    """An engine error as a GraphQL error with its code (and field, for bad input)."""
    extensions: dict[str, Any] = {"code": exc.code}
    if isinstance(exc, ValidationError):
        if exc.field:
            extensions["field"] = ".".join(camel(part) for part in str(exc.field).split("."))
        extensions["problems"] = [
            {"entity": p.entity, "field": camel(p.field) if p.field else None, "message": p.message}
            for p in exc.problems
        ]
    if isinstance(exc, WorkflowError):
        for key in ("failures", "valid"):
            if key in exc.details:
                extensions[key] = exc.details[key]
    return GraphQLError(exc.message, extensions=extensions, original_error=exc)


def graphql_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Decorate a resolver so engine errors become coded GraphQL errors."""
    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return await fn(*args, **kwargs)
            except GuanxiError as exc:
                raise to_graphql_error(exc) from exc

        return wrapper

    @functools.wraps(fn)
    def sync_wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except GuanxiError as exc:
            raise to_graphql_error(exc) from exc

    return sync_wrapper


class ErrorCodes(SchemaExtension):
    """Give every error of a result a code; hide unexpected ones behind an error id."""

    def __init__(self, *, suggestions: bool = True) -> None:
        self.suggestions = suggestions

    def on_operation(self) -> Iterator[None]:
        try:
            yield
        except GraphQLError as error:
            # ParserCache parses in its on_parse hook, so a syntax error (and the token
            # limit) leaves the operation as an exception rather than a result.
            raise self._coded(error) from None
        result = self.execution_context.result
        if result is None or not result.errors:
            return
        result.errors = [self._coded(error) for error in result.errors]

    def _coded(self, error: GraphQLError) -> GraphQLError:
        extensions = dict(error.extensions or {})
        if extensions.get("code") in CODES:
            return error
        original = error.original_error
        if isinstance(original, GuanxiError):
            coded = to_graphql_error(original)
            return GraphQLError(
                coded.message,
                error.nodes,
                error.source,
                error.positions,
                error.path,
                original,
                coded.extensions,
            )
        if original is not None and not isinstance(original, GraphQLError):
            error_id = uuid.uuid4().hex[:12]
            log.error("internal error %s at %s", error_id, error.path, exc_info=original)
            return GraphQLError(
                f"internal error {error_id}: the server log has the details",
                error.nodes,
                error.source,
                error.positions,
                error.path,
                None,
                {"code": "INTERNAL", "errorId": error_id},
            )
        message = error.message
        if any(marker in message for marker in LIMIT_MARKERS) and "Cannot query" not in message:
            code = "LIMIT_EXCEEDED"
        else:
            code = "VALIDATION"
        if not self.suggestions and " Did you mean" in message:
            message = message.split(" Did you mean")[0]
        return GraphQLError(
            message,
            error.nodes,
            error.source,
            error.positions,
            error.path,
            None,
            {**extensions, "code": code},
        )
