"""Idempotency keys: the same request sent twice with one key acts once.

One engine store (``guanxi_idempotency``) scoped to (actor, operation): the same key with
the same request returns the first result without acting again; the same key with a
different request is a VALIDATION error. Transitions and GraphQL creates both use it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .actor import Actor
from .errors import FieldProblem, ValidationError
from .records import Record, to_json

if TYPE_CHECKING:  # pragma: no cover
    from .engine import Engine


def request_hash(*parts: Any) -> str:
    """A stable digest of a request's parts (what a key must keep meaning)."""
    text = json.dumps([to_json(p) for p in parts], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


#: The longest key accepted (the column's length).
MAX_KEY = 200


class Idempotency:
    """The idempotency store of one engine (``engine.idempotency``)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @staticmethod
    def _scope(actor: Actor, operation: str) -> str:
        return f"{actor.username}#{actor.id}:{operation}"

    def remembered(self, actor: Actor, operation: str, key: str, request: str) -> Any:
        """The stored result for ``key`` (inside the caller's transaction), or None."""
        if not isinstance(key, str) or not 1 <= len(key) <= MAX_KEY or "\x00" in key:
            raise ValidationError(
                FieldProblem(operation, "idempotencyKey", f"must be 1 to {MAX_KEY} characters")
            )
        row = self.engine.classes["GxIdempotency"].get(scope=self._scope(actor, operation), key=key)
        if row is None:
            return None
        if row.request_hash != request:
            raise ValidationError(
                FieldProblem(
                    operation, "idempotencyKey", "was already used for a different request"
                )
            )
        return row.result

    def remember(self, actor: Actor, operation: str, key: str, request: str, result: Any) -> None:
        """Store the result of the first request with ``key`` (same transaction as its effect)."""
        self.engine.classes["GxIdempotency"](
            scope=self._scope(actor, operation),
            key=key,
            request_hash=request,
            result=result,
            created_at=self.engine.now(),
        )

    def create(
        self,
        entity: str,
        data: Mapping[str, Any],
        *,
        actor: Actor,
        key: str | None,
        allow_duplicate: bool = False,
    ) -> Record:
        """``records.create`` that acts once per key: a repeat returns the first record."""
        records = self.engine.records
        if not key:
            return records.create(entity, data, actor=actor, allow_duplicate=allow_duplicate)
        request = request_hash(entity, dict(data))
        operation = f"create{entity}"
        with records.transaction(write=True):
            earlier = self.remembered(actor, operation, key, request)
            if earlier is not None:
                return records.get(entity, earlier["id"], actor=actor)
            record = records.create(entity, data, actor=actor, allow_duplicate=allow_duplicate)
            self.remember(actor, operation, key, request, {"id": record.id})
            return record
