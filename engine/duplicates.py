"""Duplicate detection (查重) over every entity's ``duplicate_keys``.

Each key of an entity identifies a duplicate on its own: a Customer with keys ``[name,
phone]`` is a candidate when *either* its normalised name or its normalised phone equals
another live record's. (An entry that is a list of field names - not yet accepted by the
metadata - would be one composite key: all its parts must match together.)

Every key value is normalised by the field's type and stored in the engine table
``guanxi_dedup_key`` (entity, record_id, key_name, value; indexed on
``(entity, key_name, value, record_id)``), so finding candidates is an index lookup, never a
scan. The record API keeps the table in step in the same transaction on create, update,
delete (keys removed) and restore (keys back); ``create_many`` writes them in bulk.
:meth:`DuplicateMatcher.sync` (run by ``Engine.open``) rebuilds an entity whose keys or
normalisation rules changed, so existing rows are covered too.

Normalisation (``NORMALISER_VERSION``; changing a rule means bumping it):

- ``string``/``text`` (names): Unicode NFKC (full-width to half-width), case-folded; a
  parenthesised ``(中国)``/``(China)``/``(PRC)`` is dropped; text is split into ASCII and
  non-ASCII letter/digit runs (spaces and punctuation go); trailing Latin legal-form words
  (:data:`LATIN_SUFFIXES`: co, ltd, limited, inc, incorporated, corp, corporation, llc,
  gmbh, company, plc) are dropped as whole words, then one trailing Chinese form
  (:data:`CJK_SUFFIXES`: 股份有限公司, 有限责任公司, 有限公司, 股份公司, 公司) is dropped. A
  group stays a group: ``XX集团有限公司`` becomes ``xx集团``, distinct from ``XX有限公司``.
  Nothing is stripped that would leave the name empty. So ``XX酒业有限公司``, ``XX酒业``
  and ``ＸＸ酒业 有限公司`` are all ``xx酒业``; ``Acme Co., Ltd.`` is ``acme``.
- ``phone``: an extension (``ext``, ``x``, ``转``, ``分机``, ``#``) is dropped; digits only;
  ``00`` opens an international number; a leading ``86`` is the country code when the
  number was written with ``+``/``00`` or has 12 or more digits; leading zeros (the
  trunk prefix of ``010``, ``0755``) are dropped; the last 11 digits are compared. So
  ``+86 138-0013-8000``, ``0086 13800138000`` and ``13800138000`` match, as do
  ``+86 10 8888 6666`` and ``010-88886666``.
- ``email``: NFKC, trimmed, case-folded.
- anything else: its plain text (refs by id, numbers normalised, booleans as 1/0).

Values longer than 200 characters are stored as ``#`` + their SHA-256.

Candidates are found across every owner and scope (that is the point); callers learn only
each candidate's id, display name, owner and which keys matched, never the other values.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from pony.orm import PrimaryKey, Required, composite_index, select

from .actor import SYSTEM, Actor
from .errors import ConflictError
from .metadata import OWNER_ENTITY, EntitySpec
from .permissions import owner_field, via_field

if TYPE_CHECKING:  # pragma: no cover
    from .engine import Engine

__all__ = [
    "CJK_SUFFIXES",
    "LATIN_SUFFIXES",
    "Candidate",
    "DuplicateMatcher",
    "Group",
    "KeyMatch",
    "normalise",
]

NORMALISER_VERSION = 1
LATIN_SUFFIXES = frozenset(
    {"co", "ltd", "limited", "inc", "incorporated", "corp", "corporation", "llc", "gmbh"}
    | {"company", "plc"}
)
#: Longest first: only the first that fits is dropped.
CJK_SUFFIXES = ("股份有限公司", "有限责任公司", "有限公司", "股份公司", "公司")
PHONE_DIGITS = 11
MAX_VALUE = 200
CHUNK = 500
SETTING_PREFIX = "dedup:"
#: PostgreSQL advisory lock around sync (any fixed bigint all processes agree on).
SYNC_LOCK_KEY = int.from_bytes(b"gxdedup", "big")

_REGION = re.compile(r"[(\[]\s*(?:中国|china|prc)\s*[)\]]")
_TOKENS = re.compile(r"[0-9a-z]+|[^\W0-9a-z_]+")
_EXTENSION = re.compile(r"(?:ext\.?|x|转|分机|#)")


@dataclass(frozen=True)
class Candidate:
    """A live record that may duplicate the one asked about.

    ``score`` is the share of the entity's keys that matched (1.0: all of them);
    ``display`` its name for people; ``owner_id``/``owner_name`` the owning user (through
    ``owner_via`` chains), None for unowned records.
    """

    record_id: int
    matched_keys: tuple[str, ...]
    score: float
    display: str
    owner_id: int | None
    owner_name: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """The plain dict carried in ``ConflictError.details["candidates"]``."""
        return {
            "id": self.record_id,
            "name": self.display,
            "owner_id": self.owner_id,
            "owner": self.owner_name,
            "matched_keys": list(self.matched_keys),
            "score": self.score,
        }


@dataclass(frozen=True)
class KeyMatch:
    """One normalised ``value`` of key ``key`` shared by ``record_ids`` (in a group)."""

    key: str
    value: str
    record_ids: tuple[int, ...]


@dataclass(frozen=True)
class Group:
    """Live records linked by shared key values (connected through any key).

    ``keys`` are the keys shared inside the group; ``score`` is their share of the
    entity's keys; ``matches`` the shared values (key, value, records), by key and value.
    """

    record_ids: tuple[int, ...]
    keys: tuple[str, ...]
    score: float
    matches: tuple[KeyMatch, ...] = ()


# -- normalisation ---------------------------------------------------------------------------
def normalise_name(value: str) -> str:
    text = unicodedata.normalize("NFKC", value).casefold()
    tokens = _TOKENS.findall(_REGION.sub(" ", text))
    while len(tokens) > 1 and tokens[-1] in LATIN_SUFFIXES:
        tokens.pop()
    name = "".join(tokens)
    for suffix in CJK_SUFFIXES:
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name


def normalise_phone(value: str) -> str:
    text = _EXTENSION.split(unicodedata.normalize("NFKC", value).casefold())[0]
    digits = "".join(c for c in text if c.isdigit())
    international = text.lstrip().startswith("+")
    if digits.startswith("00"):
        digits, international = digits[2:], True
    if digits.startswith("86") and (international or len(digits) >= 12):
        digits = digits[2:]
    return digits.lstrip("0")[-PHONE_DIGITS:]


def normalise(field_type: str, value: Any) -> str | None:
    """The comparable form of one value of a field of ``field_type``; None when empty."""
    if value is None:
        return None
    if field_type == "ref":
        value = value.get("id") if isinstance(value, Mapping) else getattr(value, "id", value)
    if field_type in ("string", "text"):
        out = normalise_name(str(value))
    elif field_type == "phone":
        out = normalise_phone(str(value))
    elif field_type == "email":
        out = unicodedata.normalize("NFKC", str(value)).strip().casefold()
    elif isinstance(value, bool):
        out = "1" if value else "0"
    elif isinstance(value, int | float | Decimal) or field_type in ("decimal", "money"):
        try:
            out = format(Decimal(str(getattr(value, "amount", value))).normalize(), "f")
        except InvalidOperation:
            out = str(value).strip()
    elif isinstance(value, date | datetime):
        out = value.isoformat()
    elif isinstance(value, dict | list):
        out = json.dumps(value, sort_keys=True, ensure_ascii=False)
    else:
        out = str(value).strip()
    return _fit(out) if out else None


def _fit(value: str) -> str:
    """``value``, or ``#`` + its SHA-256 when it is too long for the key column."""
    if len(value) <= MAX_VALUE:
        return value
    return "#" + hashlib.sha256(value.encode()).hexdigest()


# -- the matcher ---------------------------------------------------------------------------
def define_table(db: Any) -> type:
    """Declare the ``guanxi_dedup_key`` engine table on an unmapped Pony database."""

    class GxDedupKey(db.Entity):  # type: ignore[name-defined]
        _table_ = "guanxi_dedup_key"
        id = PrimaryKey(int, auto=True, size=64)
        entity = Required(str, 64)
        record_id = Required(int, size=64)
        key_name = Required(str, 64)
        value = Required(str, MAX_VALUE)
        composite_index(entity, key_name, value, record_id)
        composite_index(entity, record_id)

    return GxDedupKey


class DuplicateMatcher:
    """The duplicate matcher of one Engine (``engine.duplicates``).

    Reads and writes run in the record API's transaction (joining an enclosing one) and
    use system-level queries: candidates come from every owner.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.table = define_table(engine.db)
        engine.classes["GxDedupKey"] = self.table

    # -- keys ----------------------------------------------------------------------------
    @staticmethod
    def key_sets(spec: EntitySpec) -> dict[str, tuple[str, ...]]:
        """Key name -> the fields it is made of (one, or several for a composite)."""
        out: dict[str, tuple[str, ...]] = {}
        for entry in spec.duplicate_keys:
            fields = (entry,) if isinstance(entry, str) else tuple(entry)
            out["+".join(fields)] = fields
        return out

    def keys(self, entity: str | EntitySpec, values: Mapping[str, Any]) -> dict[str, str]:
        """The normalised keys of a record with ``values`` (raw input or stored values);
        keys with an empty part are left out."""
        spec = entity if isinstance(entity, EntitySpec) else self.engine.records.spec(entity)
        out: dict[str, str] = {}
        for name, fields in self.key_sets(spec).items():
            parts = [normalise(spec.fields[f].type, values.get(f)) for f in fields]
            if all(parts):
                out[name] = _fit("\x1f".join(p for p in parts if p))
        return out

    def _stored(self, spec: EntitySpec, obj: Any) -> dict[str, Any]:
        return {f: getattr(obj, f) for fields in self.key_sets(spec).values() for f in fields}

    # -- keeping the index -------------------------------------------------------------------
    def index(self, spec: EntitySpec, obj: Any, action: str, changes: Iterable[str]) -> None:
        """Keep the keys of one written record (called by the record API's write paths)."""
        if not spec.duplicate_keys:
            return
        fields = {f for fs in self.key_sets(spec).values() for f in fs}
        if action == "update" and not fields & set(changes):
            return
        if action != "create":
            self._delete(spec.name, [obj.id])
        if action != "delete":
            self._insert(spec.name, [(obj.id, self.keys(spec, self._stored(spec, obj)))])

    def index_many(self, spec: EntitySpec, objs: Sequence[Any]) -> None:
        """Write the keys of freshly created records in bulk (``create_many``)."""
        if spec.duplicate_keys and objs:
            self._insert(spec.name, [(o.id, self.keys(spec, self._stored(spec, o))) for o in objs])

    def _delete(self, entity: str, ids: Sequence[int]) -> None:
        for chunk in _chunks(list(ids)):
            self.table.select().filter(
                "lambda k: k.entity == e and k.record_id in ids", {}, {"e": entity, "ids": chunk}
            ).delete(bulk=True)

    def _insert(self, entity: str, rows: Iterable[tuple[int, Mapping[str, str]]]) -> None:
        values = [(entity, rid, k, v) for rid, keys in rows for k, v in keys.items()]
        if not values:
            return
        mark = "?" if self.engine.db.provider.dialect == "SQLite" else "%s"
        row = f"({mark}, {mark}, {mark}, {mark})"
        cursor = self.engine.db.get_connection().cursor()
        for chunk in _chunks(values, 200):  # 800 parameters: within every SQLite's limit
            cursor.execute(
                'INSERT INTO "guanxi_dedup_key" ("entity", "record_id", "key_name", "value") '
                "VALUES " + ", ".join([row] * len(chunk)),
                [x for item in chunk for x in item],
            )

    def rebuild(self, entity: str) -> int:
        """Recompute the keys of every live record of ``entity``; returns how many records
        were read. Runs in one write transaction (or the caller's)."""
        spec = self.engine.records.spec(entity)
        cls = self.engine.classes[entity]
        fields = sorted({f for fs in self.key_sets(spec).values() for f in fs})
        setting = self.engine.classes["GxSetting"]
        with self.engine.records.transaction(write=True):
            self.table.select(lambda k: k.entity == entity).delete(bulk=True)
            count, last = 0, 0
            text = f"(x.id, {', '.join(f'x.{f}' for f in fields)}) for x in C"
            while fields:
                rows = (
                    select(
                        text + " if x.deleted_at is None and x.id > last",
                        {"C": cls},
                        {"last": last},
                    )
                    .order_by(1)
                    .limit(CHUNK)[:]
                )
                if not rows:
                    break
                self._insert(
                    entity,
                    [(r[0], self.keys(spec, dict(zip(fields, r[1:], strict=True)))) for r in rows],
                )
                count, last = count + len(rows), rows[-1][0]
            key = SETTING_PREFIX + entity
            row = setting.get(key=key)
            if spec.duplicate_keys:
                if row is None:
                    setting(key=key, value=self._fingerprint(spec))
                else:
                    row.value = self._fingerprint(spec)
            elif row is not None:
                row.delete()
        return count

    def _fingerprint(self, spec: EntitySpec) -> str:
        keys = {n: [spec.fields[f].type for f in fs] for n, fs in self.key_sets(spec).items()}
        return json.dumps([NORMALISER_VERSION, keys], sort_keys=True)

    def _stale(self) -> list[str]:
        setting = self.engine.classes["GxSetting"]
        with self.engine.records.transaction():
            stored = {
                s.key[len(SETTING_PREFIX) :]: s.value
                for s in setting.select(lambda s: s.key.startswith(SETTING_PREFIX))
            }
        wanted = {s.name: self._fingerprint(s) for s in self.engine.registry if s.duplicate_keys}
        stale = {n for n, fp in wanted.items() if stored.get(n) != fp}
        return sorted(stale | {n for n in stored if n not in wanted and n in self.engine.registry})

    def sync(self) -> list[str]:
        """Rebuild the entities whose keys or normalisation changed since they were last
        indexed (new installations, new ``duplicate_keys``, a newer guanxi); returns their
        names. Several processes starting at once rebuild once (locked, then re-checked)."""
        if not self._stale():
            return []
        with self.engine.records.transaction(write=True):
            if self.engine.db.provider.dialect != "SQLite":
                self.engine.db.execute(f"SELECT pg_advisory_xact_lock({SYNC_LOCK_KEY})")
            stale = self._stale()
            for name in stale:
                self.rebuild(name)
        return stale

    # -- finding -----------------------------------------------------------------------------
    def candidates(
        self,
        entity: str,
        values: Mapping[str, Any],
        *,
        exclude_id: int | None = None,
        limit: int = 20,
    ) -> list[Candidate]:
        """Live records of ``entity`` sharing a normalised key with ``values``, best first
        (score, then id), at most ``limit``. Any owner's records count. A bounded number of
        queries: one per key, one for the records, one per ``owner_via`` step, one for
        the owners."""
        excluded = [exclude_id] if exclude_id is not None else None
        return self.candidates_many(entity, [values], exclude_ids=excluded, limit=limit)[0]

    def candidates_many(
        self,
        entity: str,
        rows: Sequence[Mapping[str, Any]],
        *,
        exclude_ids: Sequence[int | None] | None = None,
        limit: int = 20,
    ) -> list[list[Candidate]]:
        """:meth:`candidates` for many rows at once (imports): one list per row, with the
        queries per key chunked by value, not per row. ``exclude_ids[i]`` is left out of
        row ``i``'s answer (the record itself)."""
        spec = self.engine.records.spec(entity)
        if not spec.duplicate_keys:
            return [[] for _ in rows]
        return self._match(spec, [self.keys(spec, r) for r in rows], exclude_ids, limit)

    def _match(
        self,
        spec: EntitySpec,
        row_keys: Sequence[Mapping[str, str]],
        exclude_ids: Sequence[int | None] | None,
        limit: int,
    ) -> list[list[Candidate]]:
        """Candidates for rows given as normalised keys (see :meth:`candidates_many`)."""
        hits: dict[tuple[str, str], list[int]] = defaultdict(list)
        total = len(self.key_sets(spec))
        ranked: list[list[tuple[int, tuple[str, ...], float]]] = []
        with self.engine.records.transaction():
            for name in self.key_sets(spec):
                wanted = sorted({k[name] for k in row_keys if name in k})
                for chunk in _chunks(wanted):
                    for rid, value in select(
                        (k.record_id, k.value)
                        for k in self.table
                        if k.entity == spec.name and k.key_name == name and k.value in chunk
                    ):
                        hits[(name, value)].append(rid)
            for i, keys in enumerate(row_keys):
                matched: dict[int, list[str]] = defaultdict(list)
                skip = exclude_ids[i] if exclude_ids else None
                for name, value in keys.items():
                    for rid in hits.get((name, value), ()):
                        if rid != skip:
                            matched[rid].append(name)
                scored = [
                    (rid, tuple(ks), round(len(ks) / total, 4)) for rid, ks in matched.items()
                ]
                scored.sort(key=lambda c: (-c[2], c[0]))
                ranked.append(scored[: limit * 2])  # spare room for stale (deleted) hits
            about = self._describe(spec, {rid for r in ranked for rid, _, _ in r})
        return [
            [Candidate(rid, ks, sc, *about[rid]) for rid, ks, sc in r if rid in about][:limit]
            for r in ranked
        ]

    def _describe(
        self, spec: EntitySpec, ids: set[int]
    ) -> dict[int, tuple[str, int | None, str | None]]:
        """Display name and owner of the live records among ``ids``."""
        objs = self._load(spec.name, ids, live=True)
        owners = self._owners(spec, objs, depth=0)
        users = self._load(OWNER_ENTITY, {o for o in owners.values() if o is not None})
        name = display_field(spec)
        out = {}
        for rid, obj in objs.items():
            shown = getattr(obj, name) if name else None
            owner = owners.get(rid)
            user = users.get(owner) if owner is not None else None
            out[rid] = (
                str(shown) if shown not in (None, "") else f"{spec.label} #{rid}",
                owner,
                (user.display_name or user.username) if user is not None else None,
            )
        return out

    def _load(self, entity: str, ids: set[int], *, live: bool = False) -> dict[int, Any]:
        cls = self.engine.classes[entity]
        out: dict[int, Any] = {}
        for chunk in _chunks(sorted(ids)):
            query = cls.select().filter("lambda x: x.id in ids", {}, {"ids": chunk})
            if live:
                query = query.filter(lambda x: x.deleted_at is None)
            out.update((o.id, o) for o in query)
        return out

    def _owners(self, spec: EntitySpec, objs: Mapping[int, Any], depth: int) -> dict[int, Any]:
        """Owner user id of each object: its own owner ref, or along owner_via/parent."""
        field = owner_field(spec)
        if field is not None:
            return {rid: _pk(getattr(o, field)) for rid, o in objs.items()}
        via = via_field(spec)
        if via is None or depth > 8:
            return {}
        target = self.engine.registry[spec.fields[via].to]  # type: ignore[index]
        links = {rid: _pk(getattr(o, via)) for rid, o in objs.items()}
        targets = self._load(target.name, {t for t in links.values() if t is not None})
        upper = self._owners(target, targets, depth + 1)
        return {rid: upper.get(t) for rid, t in links.items()}

    # -- at the door ---------------------------------------------------------------------------
    def refuse(
        self, spec: EntitySpec, record_id: int, *, changed: Iterable[str] | None = None
    ) -> None:
        """Raise ConflictError listing the candidates when the just-written record
        ``record_id`` duplicates another live one. With ``changed`` (the fields an update
        changed) only keys made of a changed field are checked. On PostgreSQL the key
        values are locked first, so two concurrent writes of one value cannot both pass."""
        sets = self.key_sets(spec)
        if changed is not None:
            names = set(changed)
            sets = {n: fs for n, fs in sets.items() if names & set(fs)}
        if not sets:
            return
        obj = self.engine.classes[spec.name][record_id]
        keys = {n: v for n, v in self.keys(spec, self._stored(spec, obj)).items() if n in sets}
        if not keys:
            return
        if self.engine.db.provider.dialect != "SQLite":
            for lock in sorted(_lock_id(spec.name, n, v) for n, v in keys.items()):
                self.engine.db.execute(f"SELECT pg_advisory_xact_lock({lock})")
        found = self._match(spec, [keys], [record_id], limit=20)[0]
        if found:
            field = display_field(spec)
            raise _conflict(spec, getattr(obj, field) if field else f"#{record_id}", found)

    def refuse_many(self, spec: EntitySpec, ids: Sequence[int]) -> None:
        """Raise ConflictError when records just written by ``create_many`` (``ids[i]``
        is input row ``i + 1``) duplicate existing records or each other. Each entry of
        ``details["candidates"]`` names the refused ``row`` and either the existing
        record's ``id`` or the ``other_row`` of the same input."""
        if not spec.duplicate_keys or not ids:
            return
        cls = self.engine.classes[spec.name]
        rows = [self._stored(spec, cls[i]) for i in ids]
        found = self.candidates_many(spec.name, rows, exclude_ids=list(ids))
        row_of = {rid: n for n, rid in enumerate(ids, start=1)}
        entries = []
        for n, cands in enumerate(found, start=1):
            for c in cands:
                entry = {"row": n, **c.as_dict()}
                if c.record_id in row_of:
                    if row_of[c.record_id] > n:
                        continue  # reported once, on the later row
                    entry["other_row"] = row_of[entry.pop("id")]
                entries.append(entry)
        if entries:
            lines = [
                f"row {e['row']}: like "
                + (f"row {e['other_row']}" if "other_row" in e else f"#{e['id']} {e['name']!r}")
                + f" ({', '.join(e['matched_keys'])})"
                for e in entries[:10]
            ]
            raise ConflictError(
                f"{len(entries)} possible duplicate(s) of {spec.name}: "
                + "; ".join(lines)
                + "; check them, or repeat with allow_duplicate",
                candidates=entries[:1000],
            )

    # -- groups (merge) -------------------------------------------------------------------------
    def groups(self, entity: str, *, limit: int = 50, actor: Actor = SYSTEM) -> list[Group]:
        """Groups of live records linked by shared key values, best first (score, size,
        lowest id), at most ``limit``. Records ``actor`` may not read are left out, and a
        group needs two readable members. Reads every shared value of the entity."""
        spec = self.engine.records.spec(entity)
        if not spec.duplicate_keys:
            return []
        with self.engine.records.transaction():
            shared = self.engine.db.select(
                'SELECT d."key_name", d."value", d."record_id" FROM "guanxi_dedup_key" d '
                'JOIN (SELECT "key_name", "value" FROM "guanxi_dedup_key" WHERE "entity" = $e '
                'GROUP BY "key_name", "value" HAVING COUNT(*) > 1) g '
                'ON d."key_name" = g."key_name" AND d."value" = g."value" WHERE d."entity" = $e',
                {},
                {"e": entity},
            )
            buckets: dict[tuple[str, str], list[int]] = defaultdict(list)
            for name, value, rid in shared:
                buckets[(name, value)].append(rid)
            ids = sorted({rid for members in buckets.values() for rid in members})
            visible: set[int] = set()
            for chunk in _chunks(ids):
                query = self.engine.records.scoped_query(entity, actor)
                query = query.filter("lambda x: x.id in ids", {}, {"ids": chunk})
                visible.update(o.id for o in query)
        parent: dict[int, int] = {}

        def root(x: int) -> int:
            while parent.setdefault(x, x) != x:
                parent[x] = parent[parent[x]]
                x = parent[x]
            return x

        links: list[tuple[str, str, list[int]]] = []
        for (name, value), members in sorted(buckets.items()):
            members = sorted(m for m in members if m in visible)
            if len(members) > 1:
                links.append((name, value, members))
                for m in members[1:]:
                    parent[root(m)] = root(members[0])
        comps: dict[int, set[int]] = defaultdict(set)
        comp_keys: dict[int, set[str]] = defaultdict(set)
        comp_matches: dict[int, list[KeyMatch]] = defaultdict(list)
        for name, value, members in links:
            r = root(members[0])
            comps[r].update(members)
            comp_keys[r].add(name)
            comp_matches[r].append(KeyMatch(name, value, tuple(members)))
        total = len(self.key_sets(spec))
        result = [
            Group(
                tuple(sorted(m)),
                tuple(sorted(comp_keys[r])),
                round(len(comp_keys[r]) / total, 4),
                tuple(comp_matches[r]),
            )
            for r, m in comps.items()
        ]
        result.sort(key=lambda g: (-g.score, -len(g.record_ids), g.record_ids[0]))
        return result[:limit]


def display_field(spec: EntitySpec) -> str | None:
    """The field that names a record for people: ``name``, ``title``, the natural key, or
    the first text key; None when there is none."""
    for name in ("name", "title", spec.natural_key):
        if name and name in spec.fields:
            return name
    keys = [k for k in spec.duplicate_keys if isinstance(k, str)]
    return next((k for k in keys if spec.fields[k].type == "string"), None)


def _conflict(spec: EntitySpec, shown: Any, candidates: list[Candidate]) -> ConflictError:
    listed = "; ".join(
        f"#{c.record_id} {c.display!r} (owner {c.owner_name or 'none'}; same "
        f"{', '.join(c.matched_keys)})"
        for c in candidates[:5]
    )
    return ConflictError(
        f"{spec.name} {shown!r} may be a duplicate of {listed}; check them, or save it "
        "anyway with allow_duplicate (GraphQL: allowDuplicate: true)",
        candidates=[c.as_dict() for c in candidates],
    )


def _pk(obj: Any) -> int | None:
    return obj.get_pk() if obj is not None else None


def _lock_id(entity: str, key: str, value: str) -> int:
    digest = hashlib.sha256(f"{entity}\x1f{key}\x1f{value}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def _chunks(items: Sequence[Any], size: int = CHUNK) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
