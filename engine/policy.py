"""Permission policies: which records an actor may read and write.

The record API asks the engine's policy for a condition on the query variable, so the
same rule filters lists, counts, single fetches, nested refs and analytics in SQL. The
engine installs the role-based policy (permissions.RolePolicy); :class:`AllowAll` is the
policy of an engine without roles (embedding, tools).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
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

    def check_fields(
        self, spec: EntitySpec, actor: Actor, operation: str, fields: Iterable[str]
    ) -> None:
        """Raise PermissionDenied naming ``entity.field`` if a create or update (``operation``)
        that sets ``fields`` writes one the actor may not write."""

    def visible_values(
        self, spec: EntitySpec, actor: Actor, values: Mapping[str, Any]
    ) -> dict[str, Any]:
        """``values`` of one record with the fields hidden from ``actor`` set to None."""


class AllowAll:
    """Every actor may do everything: the policy of an engine that enforces no roles."""

    def read_condition(self, spec: EntitySpec, actor: Actor, var: str) -> Condition | None:
        return None

    def check_write(
        self, spec: EntitySpec, actor: Actor, operation: str, values: dict[str, Any]
    ) -> None:
        return None

    def readable_field(self, spec: EntitySpec, actor: Actor, field: str) -> bool:
        return True

    def check_fields(
        self, spec: EntitySpec, actor: Actor, operation: str, fields: Iterable[str]
    ) -> None:
        return None

    def visible_values(
        self, spec: EntitySpec, actor: Actor, values: Mapping[str, Any]
    ) -> dict[str, Any]:
        return dict(values)
