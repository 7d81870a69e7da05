"""Permission policies: which records an actor may read and write.

The record API asks the engine's policy for a condition on the query variable, so the
same rule filters lists, counts, single fetches, nested refs and analytics in SQL. The
foundation ships :class:`AllowAll`; the GraphQL layer installs the role-based policy.
"""

from __future__ import annotations

from typing import Any, Protocol

from .actor import Actor
from .metadata import EntitySpec

#: A condition on a query variable as Pony lambda text plus its bound values.
Condition = tuple[str, dict[str, Any]]


class Policy(Protocol):
    def read_condition(self, spec: EntitySpec, actor: Actor, var: str) -> Condition | None:
        """Condition on ``var`` that limits reads; None means every record."""

    def check_write(
        self, spec: EntitySpec, actor: Actor, operation: str, values: dict[str, Any]
    ) -> None:
        """Raise PermissionDenied if ``actor`` may not ``operation`` a record with ``values``.

        ``operation`` is one of create, update, delete, restore; ``values`` are the
        record's values after the write (before it for delete).
        """

    def readable_field(self, spec: EntitySpec, actor: Actor, field: str) -> bool:
        """False for fields hidden from the actor (they cannot be read, written or filtered)."""


class AllowAll:
    """Every actor may do everything: the policy until roles are enforced."""

    def read_condition(self, spec: EntitySpec, actor: Actor, var: str) -> Condition | None:
        return None

    def check_write(
        self, spec: EntitySpec, actor: Actor, operation: str, values: dict[str, Any]
    ) -> None:
        return None

    def readable_field(self, spec: EntitySpec, actor: Actor, field: str) -> bool:
        return True
