"""Who is acting: a user, or the system itself (workers, migrations, plugin actions)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Actor:
    """The identity every record API call is made for.

    ``team_ids`` holds the actor's team and all its sub-teams (the ``team`` scope).
    """

    id: int | None
    username: str
    roles: frozenset[str] = field(default_factory=frozenset)
    team_id: int | None = None
    team_ids: frozenset[int] = field(default_factory=frozenset)
    is_system: bool = False

    @property
    def is_admin(self) -> bool:
        return self.is_system or "admin" in self.roles

    def __str__(self) -> str:
        return self.username


#: The engine acting on its own behalf; passes every permission check.
SYSTEM = Actor(id=None, username="system", roles=frozenset({"admin"}), is_system=True)
