"""Timelines: what happened around one record, newest first, gathered from every plugin.

Plugins contribute entries through the ``timeline_entries`` hook (see hookspecs.py and
``docs/plugins.md``); :func:`timeline` asks each of them for at most ``first + 1``
entries older than the cursor, merges them and cuts one page, so a page costs a few
``ORDER BY ... LIMIT`` queries per source however long the history is.

Entries are ordered by their key ``(at, kind, id)``, newest first: ``at`` is naive UTC,
``kind`` names the source (one kind per source, e.g. ``activity``), ``id`` is unique within
the kind. A cursor is the signed key of an entry; the next page holds the entries whose
key is smaller. :func:`newest_records` (entities, through the record API),
:func:`older_than` (its filter) and :func:`newest_first` (a Pony query of an engine table)
give hook implementations that cut, and :func:`date_at` the instant of an entry that only
has a date.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from datetime import UTC, date, datetime, time
from typing import TYPE_CHECKING, Any, NamedTuple

from pony.orm import desc, select

from .actor import SYSTEM, Actor
from .errors import FieldProblem, PluginError, ValidationError
from .records import Record

if TYPE_CHECKING:  # pragma: no cover
    from .engine import Engine

__all__ = [
    "TimelineEntry",
    "TimelineKey",
    "TimelinePage",
    "date_at",
    "newest_first",
    "newest_records",
    "older_than",
    "timeline",
]


class TimelineKey(NamedTuple):
    """Where an entry sorts: newest ``at`` first, then ``kind`` and ``id``, descending."""

    at: datetime
    kind: str
    id: int


@dataclass(frozen=True)
class TimelineEntry:
    """One thing that happened: a logged visit, a stage change, a payment, a ticket...

    ``entity`` and ``record_id`` name the record the entry comes from (for a link);
    ``actor_id`` the user who did it or owns it - :func:`timeline` fills ``actor`` with
    their display name (else username) when the entry leaves it empty.
    """

    at: datetime
    kind: str
    id: int
    title: str
    summary: str | None = None
    entity: str | None = None
    record_id: int | None = None
    actor_id: int | None = None
    actor: str | None = None

    @property
    def key(self) -> TimelineKey:
        return TimelineKey(self.at, self.kind, self.id)


@dataclass(frozen=True)
class TimelinePage:
    """One page of a timeline; ``cursors[i]`` is the cursor of ``entries[i]``."""

    entries: tuple[TimelineEntry, ...]
    has_next_page: bool
    end_cursor: str | None
    cursors: tuple[str, ...]


_ENTRY_FIELDS = frozenset(f.name for f in fields(TimelineEntry))


def timeline(
    engine: Engine,
    entity: str,
    record_id: int,
    *,
    actor: Actor = SYSTEM,
    first: int = 20,
    after: str | None = None,
    language: str = "en",
) -> TimelinePage:
    """The timeline of one record as ``actor`` may see it, newest first.

    The record must be readable by ``actor`` (else NotFound); every plugin implementing
    ``timeline_entries`` is asked for the entries it has about it. ``first`` is at most
    the configured page size cap; ``after`` is a cursor of an earlier page.
    """
    cap = engine.config.page_size_max
    if isinstance(first, bool) or not isinstance(first, int) or not 0 <= first <= cap:
        raise ValidationError(FieldProblem(entity, "first", f"must be between 0 and {cap}"))
    caller = engine.hook.timeline_entries
    with engine.records.transaction():
        record_id = engine.records.get(entity, record_id, actor=actor).id
        before = _decode(engine, entity, record_id, after) if after else None
        arguments = {
            "engine": engine,
            "actor": actor,
            "entity": entity,
            "record_id": record_id,
            "before": before,
            "limit": first + 1,
            "language": language,
        }
        found: list[TimelineEntry] = []
        for impl in caller.get_hookimpls():  # each in turn, so a bad answer names its plugin
            answer = impl.function(**{name: arguments[name] for name in impl.argnames})
            found.extend(_entries(answer, impl.plugin_name))
        if before is not None:
            found = [e for e in found if e.key < before]
        found.sort(key=lambda e: e.key, reverse=True)
        entries = _named(engine, found[:first])
    cursors = tuple(_encode(engine, entity, record_id, e.key) for e in entries)
    return TimelinePage(
        entries=entries,
        has_next_page=len(found) > first,
        end_cursor=cursors[-1] if cursors else None,
        cursors=cursors,
    )


def _entries(answer: Any, plugin: str) -> list[TimelineEntry]:
    """A hook's answer as entries: TimelineEntry values or mappings of their fields."""

    def bad(message: str) -> PluginError:
        return PluginError(f"plugin {plugin}: timeline_entries {message}")

    if answer is None:
        return []
    if isinstance(answer, Mapping | str | bytes) or not isinstance(answer, Iterable):
        raise bad(f"must return a list of TimelineEntry, not {type(answer).__name__}")
    out = []
    for index, item in enumerate(answer):
        if isinstance(item, Mapping):
            unknown = sorted(set(item) - _ENTRY_FIELDS)
            if unknown:
                raise bad(f"entry {index} has unknown keys: {', '.join(map(str, unknown))}")
            try:
                item = TimelineEntry(**item)
            except TypeError as exc:
                raise bad(f"entry {index}: {exc}") from None
        if not isinstance(item, TimelineEntry):
            raise bad(f"entry {index} is a {type(item).__name__}, not a TimelineEntry")
        if not isinstance(item.at, datetime) or item.at.tzinfo is not None:
            raise bad(f"entry {index}: `at` must be a naive UTC datetime, not {item.at!r}")
        if not isinstance(item.kind, str) or not item.kind:
            raise bad(f"entry {index}: `kind` must be a non-empty string")
        if isinstance(item.id, bool) or not isinstance(item.id, int):
            raise bad(f"entry {index}: `id` must be an int, not {item.id!r}")
        out.append(item)
    return out


def _named(engine: Engine, entries: Sequence[TimelineEntry]) -> tuple[TimelineEntry, ...]:
    """Fill ``actor`` from ``actor_id``: the user's display name, else username."""
    wanted = {e.actor_id for e in entries if e.actor is None and e.actor_id is not None}
    if not wanted:
        return tuple(entries)
    users = engine.records.scoped_query("User")
    names = {
        uid: display or username
        for uid, display, username in select(
            (u.id, u.display_name, u.username) for u in users if u.id in wanted
        )
    }
    return tuple(
        replace(e, actor=names.get(e.actor_id)) if e.actor is None and e.actor_id is not None else e
        for e in entries
    )


# -- cursors ----------------------------------------------------------------------------------
def _encode(engine: Engine, entity: str, record_id: int, key: TimelineKey) -> str:
    payload = json.dumps(
        ["timeline", entity, record_id, key.at.isoformat(), key.kind, key.id],
        separators=(",", ":"),
        ensure_ascii=False,
    ).encode()
    mac = hmac.new(engine.secret, payload, hashlib.sha256).digest()[:12]
    return base64.urlsafe_b64encode(payload + mac).decode().rstrip("=")


def _decode(engine: Engine, entity: str, record_id: int, cursor: str) -> TimelineKey:
    bad = ValidationError(FieldProblem(entity, "after", "is not a cursor of this timeline"))
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        payload, mac = raw[:-12], raw[-12:]
        good = hmac.new(engine.secret, payload, hashlib.sha256).digest()[:12]
        if not hmac.compare_digest(mac, good):
            raise bad
        tag, name, rid, at, kind, key_id = json.loads(payload)
        key = TimelineKey(datetime.fromisoformat(at), kind, key_id)
    except (ValueError, TypeError):
        raise bad from None
    if (tag, name, rid) != ("timeline", entity, record_id):
        raise bad
    return key


# -- helpers for hook implementations ---------------------------------------------------------
def date_at(engine: Engine, day: date) -> datetime:
    """The instant of an entry known only by its date: the start of that day in the
    installation's time zone, as naive UTC."""
    local = datetime.combine(day, time(0), tzinfo=engine.config.tz)
    return local.astimezone(UTC).replace(tzinfo=None)


def _bound(
    engine: Engine, before: TimelineKey, kind: str, is_date: bool
) -> tuple[str, Any, int | None]:
    """How a source of ``kind`` must be cut to come after ``before``: ``(op, value, id)``
    with ``op`` one of ``lt``, ``lte``, or ``tie`` (``< value``, or ``== value`` with
    ``id < id``), on the source's own date or datetime column."""
    value: Any = before.at
    if is_date:
        value = before.at.replace(tzinfo=UTC).astimezone(engine.config.tz).date()
        if date_at(engine, value) < before.at:  # the whole day sorts before the cursor
            return "lte", value, None
    if kind < before.kind:
        return "lte", value, None
    if kind > before.kind:
        return "lt", value, None
    return "tie", value, before.id


def older_than(
    engine: Engine, entity: str, before: TimelineKey | None, *, kind: str, field: str = "at"
) -> dict[str, Any] | None:
    """A ``records.list`` filter keeping the records of ``entity`` whose entries (of
    ``kind``, at the record's ``field``, with the record id as entry id) come after
    ``before`` in newest-first order; None when there is no cursor. ``field`` may be a
    datetime or a date (see :func:`date_at`). :func:`newest_records` uses it.
    """
    if before is None:
        return None
    spec = engine.records.spec(entity)
    is_date = field in spec.fields and spec.fields[field].type == "date"
    op, value, key_id = _bound(engine, before, kind, is_date)
    if op != "tie":
        return {field: {op: value}}
    return {"or": [{field: {"lt": value}}, {field: {"eq": value}, "id": {"lt": key_id}}]}


def newest_records(
    engine: Engine,
    entity: str,
    before: TimelineKey | None,
    *,
    actor: Actor,
    kind: str,
    limit: int,
    field: str = "at",
    filter: Mapping[str, Any] | None = None,
) -> list[Record]:
    """The newest ``limit`` records of ``entity`` matching ``filter`` whose entries (of
    ``kind``, at the record's ``field``, with the record id as entry id) come after
    ``before``, as ``actor`` may read them: ``engine.records.list`` with
    :func:`older_than`, ordered by ``field`` and id, descending. ``limit`` may be one more
    than the page size cap (the timeline asks for ``first + 1``)."""
    older = older_than(engine, entity, before, kind=kind, field=field)
    wanted = [f for f in (filter, older) if f]
    combined = {"and": wanted} if len(wanted) > 1 else (wanted[0] if wanted else None)
    order = [{field: "DESC"}, {"id": "DESC"}]
    cap = engine.config.page_size_max
    found: list[Record] = []
    after = None
    while len(found) < limit:
        page = engine.records.list(
            entity,
            actor=actor,
            filter=combined,
            order_by=order,
            first=min(cap, limit - len(found)),
            after=after,
            count=False,
        )
        found.extend(page.records)
        if not page.has_next_page:
            break
        after = page.end_cursor
    return found


def newest_first(
    query: Any,
    engine: Engine,
    before: TimelineKey | None,
    *,
    kind: str,
    limit: int,
    field: str = "at",
) -> list[Any]:
    """The first ``limit`` objects of a Pony ``query`` (of a table with a datetime
    ``field`` and an int ``id``, such as the engine's workflow history) that come after
    ``before``, newest first - one ``ORDER BY ... LIMIT`` query. For entities use
    ``engine.records.list`` with :func:`older_than`, so field permissions apply."""
    if not field.isidentifier():
        raise ValueError(f"not a field name: {field!r}")
    if before is not None:
        op, value, key_id = _bound(engine, before, kind, is_date=False)
        text = {
            "lt": f"lambda x: x.{field} < v",
            "lte": f"lambda x: x.{field} <= v",
            "tie": f"lambda x: x.{field} < v or (x.{field} == v and x.id < i)",
        }[op]
        query = query.filter(text, {}, {"v": value, "i": key_id})
    ordered = query.order_by(f"lambda x: (desc(x.{field}), desc(x.id))", {"desc": desc}, {})
    return list(ordered[:limit])
