"""Errors as GraphQL answers: ``extensions.code`` always, ``extensions.field`` for bad input.

Resolvers simply raise engine errors (errors.py); :class:`ErrorCodes` turns each into a
coded GraphQL error, naming fields as a client writes them (:class:`GraphQLNames`). An
unexpected exception becomes INTERNAL with an error id the server log prints beside the
traceback, so a user can quote it and the operator can find it - never the traceback
itself.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Iterator
from typing import Any

from strawberry.extensions import SchemaExtension

from graphql import FieldNode, GraphQLError
from guanxi.engine import GuanxiError, TransitionValuesError, ValidationError, WorkflowError
from guanxi.engine.metadata import BASE_FIELDS, EntityRegistry

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
#: Arguments of the generated fields that take filters and orders rather than input.
FILTER_ARGUMENTS = frozenset({"filter", "orderBy"})
#: Engine argument names that appear in messages besides field names.
ARGUMENT_NAMES = frozenset({"order_by", "idempotency_key", "current_password"})
_ENTITY_FIELD = re.compile(r"\b([A-Z][A-Za-z0-9]*)\.([a-z][a-z0-9_]*)\b")
_INDEX = re.compile(r"^(.*?)(\[\d+\])?$")
MISSING_FIELDS = "missing required field(s) "


class GraphQLNames:
    """Engine names as a GraphQL client writes them: fields in camelCase, a ref in an
    input as ``fairId``, a part as ``lines[0].quantity``, a nested filter as ``fair.city``.
    """

    def __init__(self, registry: EntityRegistry) -> None:
        self.registry = registry

    def path(self, entity: str, path: str, *, inputs: bool) -> tuple[str, set[str]]:
        """The GraphQL spelling of a problem's dotted ``path`` on ``entity`` and the
        entities it passes through. With ``inputs``, a ref at the end of the path names the
        input argument (``fairId``); in a filter it is the nested filter's key (``fair``)."""
        spec = self.registry.get(entity)
        seen = {spec.name} if spec is not None else set()
        segments = path.split(".")
        out = []
        for i, segment in enumerate(segments):
            match = _INDEX.match(segment)
            assert match is not None
            name, index = match.group(1), match.group(2) or ""
            f = spec.fields.get(name) if spec is not None else None
            if f is not None and f.type == "ref":
                if inputs and i == len(segments) - 1:
                    name = f"{name}_id"
                spec = self.registry.get(f.to)  # type: ignore[arg-type]
            elif spec is not None and name in spec.reverses:
                spec = self.registry.get(spec.reverses[name].source)
            else:
                spec = None
            if spec is not None:
                seen.add(spec.name)
            out.append(camel(name) + index)
        return ".".join(out), seen

    def text(self, message: str, entities: set[str]) -> str:
        """``message`` with the snake_case field names of ``entities`` in camelCase, and
        every ``Entity.field`` of a known entity too."""
        names = set(ARGUMENT_NAMES) | set(BASE_FIELDS)
        for name in entities:
            spec = self.registry.get(name)
            if spec is not None:
                names.update(spec.fields)
        names = {n for n in names if "_" in n}
        if names:
            words = "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True))
            message = re.sub(rf"\b({words})\b", lambda m: camel(m.group(1)), message)
        return _ENTITY_FIELD.sub(self._entity_field, message)

    def _entity_field(self, match: re.Match[str]) -> str:
        spec = self.registry.get(match.group(1))
        if spec is None or match.group(2) not in spec.fields:
            return match.group(0)
        return f"{spec.name}.{camel(match.group(2))}"


def to_graphql_error(
    exc: GuanxiError, names: GraphQLNames | None = None, *, inputs: bool = True
) -> GraphQLError:
    """An engine error as a GraphQL error with its code (and field, for bad input).

    ``names`` renames fields in the client's spelling (without it they are only put in
    camelCase); ``inputs`` says whether a problem's path names input arguments or a
    filter's keys (see :meth:`GraphQLNames.path`).
    """
    extensions: dict[str, Any] = {"code": exc.code}
    message = exc.message
    if isinstance(exc, ValidationError):
        problems = []
        for p in exc.problems:
            field, entities = _problem_path(names, p.entity, p.field, inputs)
            text = names.text(p.message, entities) if names is not None else p.message
            problems.append({"entity": p.entity, "field": field, "message": text})
        if problems and problems[0]["field"]:
            extensions["field"] = problems[0]["field"]
        extensions["problems"] = problems
        message = "; ".join(
            f"{p['entity']}.{p['field']}: {p['message']}"
            if p["field"]
            else f"{p['entity']}: {p['message']}"
            for p in problems
        )
    if isinstance(exc, TransitionValuesError):
        message = f"{exc.context}: {message}"
    if isinstance(exc, WorkflowError):
        if "failures" in exc.details:
            failures = [_camel_failure(f) for f in exc.details["failures"]]
            for old, new in zip(exc.details["failures"], failures, strict=True):
                message = message.replace(old, new)
            extensions["failures"] = failures
        if "valid" in exc.details:
            extensions["valid"] = exc.details["valid"]
    if "candidates" in exc.details:  # a duplicate refused at the door
        extensions["candidates"] = exc.details["candidates"]
    if names is not None and not isinstance(exc, ValidationError):
        message = names.text(message, set())
    return GraphQLError(message, extensions=extensions, original_error=exc)


def _problem_path(
    names: GraphQLNames | None, entity: str, field: str | None, inputs: bool
) -> tuple[str | None, set[str]]:
    if not field:
        return None, {entity}
    if names is None:
        return ".".join(camel(part) for part in field.split(".")), {entity}
    return names.path(entity, field, inputs=inputs)


def _camel_failure(failure: str) -> str:
    """A transition's failure with the field names it lists in camelCase."""
    if not failure.startswith(MISSING_FIELDS):
        return failure
    listed = failure[len(MISSING_FIELDS) :].split(", ")
    return MISSING_FIELDS + ", ".join(camel(name) for name in listed)


def camel_reasons(reasons: list[str]) -> list[str]:
    """Why transitions may not fire (``availableTransitions``), in the API's names."""
    return [_camel_failure(reason) for reason in reasons]


class ErrorCodes(SchemaExtension):
    """Give every error of a result a code; hide unexpected ones behind an error id."""

    def __init__(self, *, suggestions: bool = True, names: GraphQLNames | None = None) -> None:
        self.suggestions = suggestions
        self.names = names

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
        original = error.original_error
        if isinstance(original, GuanxiError):
            coded = to_graphql_error(original, self.names, inputs=not _takes_filter(error))
            return GraphQLError(
                coded.message,
                error.nodes,
                error.source,
                error.positions,
                error.path,
                original,
                coded.extensions,
            )
        extensions = dict(error.extensions or {})
        if extensions.get("code") in CODES:
            return error
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


def _takes_filter(error: GraphQLError) -> bool:
    """Whether the field that failed was given a filter or an order (its problems name
    filter keys, not input arguments)."""
    node = error.nodes[0] if error.nodes else None
    return isinstance(node, FieldNode) and any(
        argument.name.value in FILTER_ARGUMENTS for argument in node.arguments or ()
    )
