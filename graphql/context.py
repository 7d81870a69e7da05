"""Per-request context: who asks, in which language, and the request's DataLoaders.

Pony sessions are thread-bound and synchronous, so every piece of database work runs in
a worker thread inside its own ``db_session`` (:func:`in_thread`) and hands back plain
immutable records; nothing awaits inside a session and no Pony object leaves one.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import anyio.to_thread
from pony.orm import db_session
from strawberry.dataloader import DataLoader

from guanxi.engine import Actor, Engine, PermissionDenied, Record, Unauthenticated
from guanxi.engine.filters import compile_filter, compile_order

from .nested import first_per_parent

T = TypeVar("T")


async def in_thread(fn: Callable[[], T]) -> T:
    """Run ``fn`` in a worker thread inside one db_session (one read transaction)."""

    def run() -> T:
        with db_session:
            return fn()

    return await anyio.to_thread.run_sync(run)


async def call_engine(fn: Callable[[], T]) -> T:
    """Run an engine call that manages its own transaction (a mutation) in a thread."""
    return await anyio.to_thread.run_sync(fn)


@dataclass
class Context:
    """What every resolver can reach through ``info.context``."""

    engine: Engine
    actor: Actor | None
    language: str = "en"
    request: Any = None
    token: str | None = None
    loaders: dict[Hashable, DataLoader] = field(default_factory=dict)

    def require_actor(self) -> Actor:
        if self.actor is None:
            raise Unauthenticated("sign in first: send Authorization: Bearer <token>")
        return self.actor

    def label(self, item: Any) -> str:
        """The label of a metadata item (entity, field, state, transition, role) in the
        caller's language: its ``labels[language]``, else its ``label``."""
        labels = getattr(item, "labels", None) or {}
        return labels.get(self.language) or getattr(item, "label", "") or ""

    def loader(self, key: Hashable, make: Callable[[], DataLoader]) -> DataLoader:
        found = self.loaders.get(key)
        if found is None:
            found = self.loaders[key] = make()
        return found

    # -- loaders ---------------------------------------------------------------------------
    def record_loader(self, entity: str) -> DataLoader[int, Record | None]:
        """Records of ``entity`` by id, as this actor may see them (None when hidden)."""
        return self.loader(
            ("record", entity), lambda: DataLoader(functools.partial(self._load_records, entity))
        )

    async def _load_records(self, entity: str, ids: Sequence[int]) -> list[Record | None]:
        actor = self.require_actor()
        records = self.engine.records

        def load() -> dict[int, Record]:
            spec = records.spec(entity)
            query = records.scoped_query(entity, actor).filter(
                "lambda x: x.id in ids", {}, {"ids": list(ids)}
            )
            return {obj.id: records._record(spec, obj, actor) for obj in query}

        found = await in_thread(load)
        return [found.get(int(i)) for i in ids]

    def reverse_loader(
        self, entity: str, reverse: str, flt: Any, order: Any, first: int
    ) -> DataLoader[int, tuple[int, list[Record]]]:
        """For a parent id: (total, first N) of the records pointing at it via ``reverse``."""
        key = ("reverse", entity, reverse, repr(flt), repr(order), first)
        return self.loader(
            key,
            lambda: DataLoader(
                functools.partial(self._load_reverse, entity, reverse, flt, order, first)
            ),
        )

    async def _load_reverse(
        self,
        entity: str,
        reverse: str,
        flt: Any,
        order: Any,
        first: int,
        parent_ids: Sequence[int],
    ) -> list[tuple[int, list[Record]]]:
        actor = self.require_actor()
        engine = self.engine
        records = engine.records
        rev = engine.registry[entity].reverses[reverse]
        source = rev.source

        def load() -> tuple[dict[int, int], dict[int, list[Record]]]:
            spec = records.spec(source)
            readable = records._readable(actor)
            compiled = compile_filter(
                engine.registry,
                engine.classes,
                source,
                flt,
                scope=records._scope(actor),
                readable=readable,
            )
            if compiled.include_deleted and not actor.is_admin:  # as records.list says
                raise PermissionDenied("only admins may list the recycle bin")
            query = records.scoped_query(source, actor, include_deleted=compiled.include_deleted)
            query = compiled.apply(query).filter(
                f"lambda x: x.{rev.field}.id in parents", {}, {"parents": list(parent_ids)}
            )
            order_text = compile_order(engine.registry, source, order, readable=readable)
            totals, grouped = first_per_parent(
                engine.db,
                engine.classes[source],
                query,
                rev.field,
                order_text,
                records._globals(),
                first,
            )
            return totals, {
                parent: [records._record(spec, obj, actor) for obj in objs]
                for parent, objs in grouped.items()
            }

        totals, grouped = await in_thread(load)
        return [(totals.get(p, 0), grouped.get(p, [])) for p in parent_ids]
