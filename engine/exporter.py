"""Exporting records to spreadsheets: ``guanxi export`` and GraphQL ``exportRecords``.

An export writes the records of one entity that match a filter (the engine's filter
format, see filters.py) and that the actor may both read and export, as ``.csv`` (UTF-8
with BOM, so Excel opens it in any language) or ``.xlsx``. Columns are the entity's fields
(``fields`` picks and orders them; the base fields ``id, created_at, updated_at,
created_by, version`` may be asked for too), headed by field names or, with
``labels="zh"``/``"en"``, by labels. A ref is written as the target's natural key when it
has one (a customer's code, an owner's username), else as the id; a money field as two
columns, the amount and ``<field>_currency``. So a file exported is a file the importer
reads back (see importer.py).

Who may export is a permission of its own (``export: none|own|team|all`` of a role in
``roles.yaml``; admins always may): ``own`` reaches the records the actor owns, ``team``
those owned within their team and its sub-teams, ``all`` every record they may read; an
entity that is not owned is reached whole by any scope but ``none``. Every export is
audited when it starts (who, entity, filter, columns, format, the number of records it
matched), and so is every refusal: read them with :meth:`Records.audit_log`
(``guanxi audit --action export``).

Records are read in keyset pages of :data:`CHUNK`, each page in a transaction of its own,
so an export of any size streams in bounded memory and never holds a session while the
file is written (or sent).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from pony.orm import select

from .actor import SYSTEM, Actor
from .errors import FieldProblem, PermissionDenied, ValidationError
from .filters import compile_filter
from .importer import FORMULA_START, currency_labels
from .metadata import CURRENCY_SUFFIX, EntitySpec, FieldSpec
from .permissions import RolePolicy
from .validation import Money

if TYPE_CHECKING:  # pragma: no cover
    from .engine import Engine

__all__ = ["FORMATS", "LABEL_LANGUAGES", "Export", "export_file", "export_scopes"]

FORMATS = ("csv", "xlsx")
LABEL_LANGUAGES = ("en", "zh")
CHUNK = 1000
#: Base fields an export may name in ``fields`` (``deleted_at`` only matters in the bin).
BASE_COLUMNS = ("id", "created_at", "updated_at", "created_by", "version")
BOOL_WORDS = {None: ("true", "false"), "en": ("yes", "no"), "zh": ("是", "否")}


@dataclass(frozen=True)
class _Column:
    header: str
    name: str  # field name, or a base column
    field: FieldSpec | None  # None for base columns
    currency: bool = False


def export_scopes(engine: Engine, spec: EntitySpec, actor: Actor) -> set[str]:
    """The export scopes of ``actor`` (``all`` for admins and the system); empty: none."""
    if actor.is_admin:
        return {"all"}
    policy = engine.policy
    if not isinstance(policy, RolePolicy):
        return {"all"}  # an engine without roles refuses nothing
    return {role.export for role in policy.roles(actor)} - {"none"}


def _export_condition(
    engine: Engine, spec: EntitySpec, actor: Actor, scopes: set[str]
) -> tuple[str, dict[str, Any]] | None:
    """The records ``scopes`` reach as a condition on ``x`` (None: every readable one).
    ``own`` means owned by the actor: records only shared with them do not count."""
    policy = engine.policy
    if "all" in scopes or not isinstance(policy, RolePolicy):
        return None
    return policy._reach(spec, frozenset(scopes), actor, "x", (), frozenset())


def _who(actor: Actor) -> str:
    return " / ".join(sorted(actor.roles)) or f"{actor.username} (no role)"


class Export:
    """One export, checked and ready to stream: build it with :meth:`prepare`."""

    def __init__(
        self,
        engine: Engine,
        spec: EntitySpec,
        actor: Actor,
        flt: Mapping[str, Any] | None,
        columns: list[_Column],
        labels: str | None,
        fmt: str,
        condition: tuple[str, dict[str, Any]] | None,
    ) -> None:
        self.engine = engine
        self.spec = spec
        self.actor = actor
        self.filter = dict(flt) if flt else None
        self.columns = columns
        self.labels = labels
        self.format = fmt
        self.condition = condition
        self.rows = 0
        self.total: int | None = None

    # -- preparing ---------------------------------------------------------------------------
    @classmethod
    def prepare(
        cls,
        engine: Engine,
        entity: str,
        *,
        actor: Actor = SYSTEM,
        filter: Mapping[str, Any] | None = None,
        fields: Sequence[str] | None = None,
        labels: str | None = None,
        fmt: str = "csv",
    ) -> Export:
        """Check everything an export needs before a byte is written: the entity, the
        format, the columns, the filter, and the actor's export permission (a refusal is
        audited, then raised as PermissionDenied)."""
        spec = engine.registry.get(entity)
        if spec is None:
            raise ValidationError(
                FieldProblem(
                    entity,
                    None,
                    f"is not a known entity; known: {', '.join(engine.registry.names())}",
                )
            )
        if fmt not in FORMATS:
            raise ValidationError(
                FieldProblem(entity, "format", f"{fmt!r} is not one of {', '.join(FORMATS)}")
            )
        if labels is not None and labels not in LABEL_LANGUAGES:
            raise ValidationError(
                FieldProblem(
                    entity, "labels", f"{labels!r} is not one of {', '.join(LABEL_LANGUAGES)}"
                )
            )
        columns = _columns(engine, spec, actor, fields, labels)
        records = engine.records
        # a bad filter is a mistake to report before anything else
        compile_filter(
            engine.registry,
            engine.classes,
            entity,
            filter,
            scope=records._scope(actor),
            readable=records._readable(actor),
        )
        if filter and filter.get("deleted") and not actor.is_admin:
            raise PermissionDenied("only admins may export the recycle bin")
        scopes = export_scopes(engine, spec, actor)
        if not scopes:
            message = (
                f"{_who(actor)} may not export {spec.name} records: the role's export "
                "permission is none (roles.yaml `export:`)"
            )
            audit_export(
                engine, spec, actor, "export_refused", {"filter": filter, "reason": message}
            )
            raise PermissionDenied(message)
        return cls(
            engine,
            spec,
            actor,
            filter,
            columns,
            labels,
            fmt,
            _export_condition(engine, spec, actor, scopes),
        )

    @property
    def headers(self) -> list[str]:
        return [c.header for c in self.columns]

    # -- reading ------------------------------------------------------------------------------
    def _query(self) -> Any:
        records = self.engine.records
        compiled = compile_filter(
            self.engine.registry,
            self.engine.classes,
            self.spec.name,
            self.filter,
            scope=records._scope(self.actor),
            readable=records._readable(self.actor),
        )
        query = records.scoped_query(
            self.spec.name, self.actor, include_deleted=compiled.include_deleted
        )
        query = compiled.apply(query)
        if self.condition is not None:
            text, bound = self.condition
            query = query.filter(f"lambda x: {text}", records._globals(), bound)
        return query

    def count(self) -> int:
        """How many records the export matches now."""
        with self.engine.records.transaction():
            return self._query().count()

    def start(self) -> None:
        """Audit the export as it starts (who, what, how many records it matched)."""
        self.total = self.count()
        audit_export(
            self.engine,
            self.spec,
            self.actor,
            "export",
            {
                "filter": self.filter,
                "fields": [c.name + (CURRENCY_SUFFIX if c.currency else "") for c in self.columns],
                "format": self.format,
                "labels": self.labels,
                "rows": self.total,
            },
        )

    def pages(
        self, progress: Callable[[int, int | None], None] | None = None
    ) -> Iterator[list[list[Any]]]:
        """The rows of cell values, a page at a time; each page read in its own
        transaction, so no session is held between pages."""
        records = self.engine.records
        last = 0
        while True:
            with records.transaction():
                objs = list(
                    self._query()
                    .filter("lambda x: x.id > last", {}, {"last": last})
                    .order_by("lambda x: x.id", {}, {})[:CHUNK]
                )
                if not objs:
                    return
                last = objs[-1].id
                values = [records._record(self.spec, obj, self.actor) for obj in objs]
                keys = self._natural_keys(values)
                page = [self._cells(record, keys) for record in values]
            self.rows += len(page)
            if progress is not None:
                progress(self.rows, self.total)
            yield page

    def _natural_keys(self, values: list[Any]) -> dict[str, dict[int, str]]:
        """For each ref column whose target has a natural key: id -> key, one query each
        (as the actor sees the targets; one they cannot read is written as its id)."""
        out: dict[str, dict[int, str]] = {}
        records = self.engine.records
        for c in self.columns:
            f = c.field
            if f is None or f.type != "ref" or c.name in out:
                continue
            target = self.engine.registry[f.to]  # type: ignore[index]
            key = target.natural_key
            ids = sorted({r[c.name] for r in values if r[c.name] is not None})
            if key is None or not ids:
                continue
            who = SYSTEM if c.name == "owner" else self.actor
            query = records.scoped_query(target.name, who, include_deleted=True).filter(
                "lambda x: x.id in ids", {}, {"ids": ids}
            )
            pairs = select(f"(x.id, x.{key}) for x in query", {}, {"query": query})
            out[c.name] = {int(i): k for i, k in pairs if k is not None}
        return out

    def _cells(self, record: Any, keys: Mapping[str, Mapping[int, str]]) -> list[Any]:
        cells: list[Any] = []
        xlsx = self.format == "xlsx"
        for c in self.columns:
            value = record[c.name]
            f = c.field
            if value is None:
                cells.append(None)
            elif f is None:
                cells.append(value if xlsx or not isinstance(value, datetime) else _iso(value))
            elif c.currency:
                cells.append(value.currency)
            else:
                cells.append(self._cell(f, value, keys.get(c.name), xlsx))
        return cells

    def _cell(self, f: FieldSpec, value: Any, keys: Mapping[int, str] | None, xlsx: bool) -> Any:
        t = f.type
        if t == "ref":
            return keys.get(value, value) if keys else value
        if t == "money":
            assert isinstance(value, Money)
            return value.amount
        if t == "enum" and self.labels:
            choice = next((ch for ch in f.choices if ch.value == value), None)
            return (choice.labels.get(self.labels) or choice.label) if choice else value
        if t == "bool":
            yes, no = BOOL_WORDS[self.labels]
            return value if xlsx and self.labels is None else (yes if value else no)
        if t == "json":
            return json.dumps(value, ensure_ascii=False)
        if xlsx:
            if t == "datetime" and value.microsecond % 1000:
                return _iso(value)  # Excel keeps milliseconds: as text nothing is lost
            return value
        if t == "datetime":
            return _iso(value)
        if t == "date":
            return value.isoformat()
        return value  # text as it is; numbers are written by the csv module

    # -- writing ------------------------------------------------------------------------------
    def csv_chunks(
        self, progress: Callable[[int, int | None], None] | None = None
    ) -> Iterator[bytes]:
        """The CSV file as bytes, a page at a time (UTF-8 with BOM, CRLF like Excel);
        audits the export before its first byte."""
        self.start()
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow([_safe(h) for h in self.headers])
        yield ("\ufeff" + buffer.getvalue()).encode("utf-8")
        for page in self.pages(progress):
            buffer.seek(0)
            buffer.truncate()
            writer.writerows([[_safe(cell) for cell in row] for row in page])
            yield buffer.getvalue().encode("utf-8")

    def write(
        self,
        target: Path | str | IO[bytes],
        progress: Callable[[int, int | None], None] | None = None,
    ) -> int:
        """Write the file to ``target`` (a path or a binary file); returns the row count."""
        if isinstance(target, Path | str):
            with open(target, "wb") as handle:
                return self.write(handle, progress)
        if self.format == "csv":
            for chunk in self.csv_chunks(progress):
                target.write(chunk)
            return self.rows
        self._write_xlsx(target, progress)
        return self.rows

    def _write_xlsx(
        self, target: IO[bytes], progress: Callable[[int, int | None], None] | None
    ) -> None:
        from openpyxl import Workbook
        from openpyxl.cell import WriteOnlyCell

        self.start()
        book = Workbook(write_only=True)
        sheet = book.create_sheet(self.spec.label_in(self.labels)[:31] or self.spec.name)

        def cell(value: Any) -> Any:
            if isinstance(value, str) and value.startswith("="):
                text = WriteOnlyCell(sheet, value=value)
                text.data_type = "s"  # text, never a formula
                return text
            return value

        sheet.append([cell(h) for h in self.headers])
        for page in self.pages(progress):
            for row in page:
                sheet.append([cell(v) for v in row])
        book.save(target)


def _iso(value: datetime) -> str:
    return value.isoformat(sep=" ")


def _safe(value: Any) -> Any:
    """A CSV cell a spreadsheet will not run as a formula: text starting with ``= + - @``
    gets a leading ``'`` (which the importer removes again)."""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


def _columns(
    engine: Engine,
    spec: EntitySpec,
    actor: Actor,
    fields: Sequence[str] | None,
    labels: str | None,
) -> list[_Column]:
    policy = engine.policy
    readable = [f for f in spec if not f.internal and policy.readable_field(spec, actor, f.name)]
    if fields is None:
        names = [f.name for f in readable]
    else:
        names = [n.strip() for n in fields if n.strip()]
        known = {f.name for f in readable} | set(BASE_COLUMNS)
        unknown = [n for n in names if n not in known]
        if unknown:
            raise ValidationError(
                FieldProblem(
                    spec.name,
                    unknown[0],
                    f"{', '.join(map(repr, unknown))}: no such field; the fields of "
                    f"{spec.name} are {', '.join(list(BASE_COLUMNS) + [f.name for f in readable])}",
                )
            )
        if len(set(names)) != len(names):
            raise ValidationError(FieldProblem(spec.name, None, "fields: a field is named twice"))
    label_of: dict[str, str] = {}
    for name in names:
        f = spec.fields.get(name)
        label_of[name] = name if labels is None or f is None else f.label_in(labels)
    shared = {text for text in label_of.values() if list(label_of.values()).count(text) > 1}
    columns = []
    for name in names:
        f = spec.fields.get(name)
        header = label_of[name]
        if header in shared:
            header = f"{header} ({name})"
        columns.append(_Column(header, name, f))
        if f is not None and f.type == "money":
            currency = name + CURRENCY_SUFFIX if labels is None else currency_labels(f)[labels]
            columns.append(_Column(currency, name, f, currency=True))
    return columns


def audit_export(
    engine: Engine, spec: EntitySpec, actor: Actor, action: str, details: dict[str, Any]
) -> None:
    """Write one export audit event (``export`` or ``export_refused``) in a transaction of
    its own, so a refusal stays recorded although the caller goes on to raise."""
    records = engine.records
    with records.transaction(write=True):
        records._audit(spec, 0, action, details, actor)


def export_file(
    engine: Engine,
    entity: str,
    target: Path | str,
    *,
    actor: Actor = SYSTEM,
    filter: Mapping[str, Any] | None = None,
    fields: Sequence[str] | None = None,
    labels: str | None = None,
    progress: Callable[[int, int | None], None] | None = None,
) -> int:
    """Export ``entity`` to the file ``target`` (.csv or .xlsx by its suffix); returns the
    number of records written."""
    suffix = Path(target).suffix.lower().lstrip(".")
    if suffix not in FORMATS:
        raise ValidationError(
            FieldProblem(entity, None, f"{target}: write to a .csv or an .xlsx file")
        )
    export = Export.prepare(
        engine, entity, actor=actor, filter=filter, fields=fields, labels=labels, fmt=suffix
    )
    return export.write(target, progress)
