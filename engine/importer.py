"""Importing records from spreadsheets: ``guanxi import`` and GraphQL ``importRecords``.

A file is a ``.csv`` (UTF-8 with or without BOM, UTF-16 with BOM, or GBK/GB18030 as Excel
writes it on Chinese Windows; comma, semicolon or tab separated) or an ``.xlsx`` workbook
(its first sheet). Row 1 is the header; every other non-empty row is one record. Row
numbers in problems are the spreadsheet's own (header = row 1), so a person finds them in
Excel.

Header cells name fields by their name or by a label in any language (``name``, ``Name``,
``名称``; English case-insensitive, full-width characters as half-width). A money field
takes ``12.50`` (the installation's currency) or ``12.50 EUR``, or its amount and a
``<field>_currency`` column (``Amount currency``, ``金额币种``). A ref takes the target's
natural key (``C-001`` for a customer's code, a username for an owner) or an id; a value
that is a natural key of no record but a whole number is taken as an id. Dates take ISO
(``2027-03-01``), ``2027/3/1`` and ``2027年3月1日``; datetimes ISO or ``2027/3/1 9:30``
(without an offset they are UTC, as everywhere in the API). Enums take the value or a
label, booleans ``true/false``, ``yes/no``, ``1/0``, ``是/否``. Empty cells are left out,
so defaults apply (and an update leaves the field alone).

Every row goes through the record API as the importing actor (``create_many`` in batches,
``update`` for duplicates with ``on_duplicate="update"``), inside ONE transaction: by
default any row problem and nothing is written; ``skip_errors`` writes the good rows;
``dry_run`` validates everything and writes nothing. Records of a workflow-bound entity
start in the workflow's initial state: the state column may be empty or name the initial
state (by value or label); any other state is a problem of that row, since only
transitions move a record on.

Duplicates (``on_duplicate``): a row is a duplicate when its natural key equals a live
record's, or when the engine's duplicate matcher (``duplicate_keys``) finds a live record
or an earlier row of the file sharing a key. ``error`` reports the row, ``skip`` leaves it
out (listed in the report), ``update`` writes its non-empty cells over the one record it
matches (a row matching several records is a problem).
"""

from __future__ import annotations

import codecs
import csv
import functools
import io
import json
import re
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from pony.orm import select

from .actor import SYSTEM, Actor
from .errors import (
    ConflictError,
    FieldProblem,
    NotFound,
    PermissionDenied,
    ValidationError,
)
from .metadata import BASE_FIELDS, CURRENCY_SUFFIX, EntitySpec, FieldSpec
from .validation import Money

if TYPE_CHECKING:  # pragma: no cover
    from .engine import Engine

__all__ = [
    "ON_DUPLICATE",
    "ImportResult",
    "RowProblem",
    "currency_labels",
    "import_file",
    "write_report",
]

ON_DUPLICATE = ("error", "skip", "update")
BATCH_SIZE = 2000
#: Problems kept in a result: enough for any person to act on, bounded for memory.
MAX_PROBLEMS = 10_000
CHUNK = 1 << 20
#: SQLite page cache while importing, in KiB (see _large_cache)
SQLITE_CACHE_KIB = 64 * 1024
#: Suffix of a money field's currency column label, per language.
CURRENCY_LABELS = {"en": " currency", "zh": "币种"}
TRUE_WORDS = frozenset({"true", "yes", "y", "1", "是", "对", "√", "✓"})
FALSE_WORDS = frozenset({"false", "no", "n", "0", "否", "错", "×", "✗"})
_DATE = re.compile(r"^(\d{4})\s*[-/.年]\s*(\d{1,2})\s*[-/.月]\s*(\d{1,2})\s*日?$")
_DATETIME = re.compile(
    r"^(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})[ T](\d{1,2}):(\d{2})(?::(\d{2})(?:\.(\d{1,6}))?)?$"
)
_GROUPED = re.compile(r"^[-+]?\d{1,3}(,\d{3})+(\.\d+)?$")
_AMOUNT_CURRENCY = re.compile(r"^(?P<a>[^\sA-Za-z]+)\s*(?P<c>[A-Za-z]{3})$")
_CURRENCY_AMOUNT = re.compile(r"^(?P<c>[A-Za-z]{3})\s*(?P<a>[^\sA-Za-z]+)$")
#: A cell starting with one of these is exported with a leading ' (see exporter.py).
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_NAMED = re.compile(r"^(.*?)\s*\(([a-z][a-z0-9_]*)\)$")


@dataclass(frozen=True)
class RowProblem:
    """One problem of one row: ``row`` is the spreadsheet's row number (header = 1),
    ``column`` the header cell as written (None: the row as a whole), ``value`` the cell
    as written. ``skipped`` marks a duplicate left out by ``on_duplicate="skip"``."""

    row: int
    column: str | None
    value: str | None
    message: str
    skipped: bool = False


@dataclass
class ImportResult:
    """What an import did (or, after a dry run or a refused import, would have done)."""

    entity: str
    dry_run: bool = False
    #: data rows read (empty rows are not counted)
    rows: int = 0
    created: int = 0
    updated: int = 0
    skipped: int = 0
    #: rows with a problem (not written)
    failed: int = 0
    #: whether the created and updated records were committed
    written: bool = False
    problems: list[RowProblem] = field(default_factory=list)
    #: columns read but not imported, with the reason
    ignored_columns: list[str] = field(default_factory=list)

    @property
    def errors(self) -> list[RowProblem]:
        return [p for p in self.problems if not p.skipped]


def write_report(result: ImportResult, target: Path | str | IO[str]) -> None:
    """The report as CSV (UTF-8 with BOM, so Excel opens it): row, column, value, message."""
    if isinstance(target, Path | str):
        with open(target, "w", encoding="utf-8-sig", newline="") as handle:
            write_report(result, handle)
        return
    writer = csv.writer(target)
    writer.writerow(["row", "column", "value", "message"])
    for p in sorted(result.problems, key=lambda p: (p.row, p.column or "")):
        writer.writerow([p.row, p.column or "", "" if p.value is None else p.value, p.message])


def currency_labels(f: FieldSpec) -> dict[str, str]:
    """The labels of a money field's currency column, per language (``Amount currency``)."""
    out = {"en": f.label + CURRENCY_LABELS["en"]}
    for language, label in f.labels.items():
        out[language] = label + CURRENCY_LABELS.get(language, CURRENCY_LABELS["en"])
    return out


class _FileError(ValidationError):
    """The file as a whole cannot be imported (encoding, header); nothing was read."""

    def __init__(self, entity: str, message: str) -> None:
        super().__init__(FieldProblem(entity, None, message))


class _Rollback(Exception):
    """Ends the import's transaction without committing (dry run, refused import)."""


# -- reading the file -----------------------------------------------------------------------
def _binary(source: Path | str | IO[bytes]) -> tuple[IO[bytes], bool]:
    """A seekable binary handle on ``source``, and whether we opened it."""
    if isinstance(source, Path | str):
        return open(source, "rb"), True  # noqa: SIM115 - closed by the caller
    if not source.seekable():
        return io.BytesIO(source.read()), True
    return source, False


def _encoding(handle: IO[bytes], entity: str, name: str) -> str:
    """The encoding of a CSV file: UTF-16 by its BOM, else UTF-8 (BOM or not) when every
    byte decodes, else GB18030 (a superset of GBK and GB2312, as Excel writes Chinese)."""
    handle.seek(0)
    head = handle.read(4)
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    failures = []
    for encoding in ("utf-8-sig", "gb18030"):
        handle.seek(0)
        decoder = codecs.getincrementaldecoder(encoding)()
        offset = 0
        try:
            while chunk := handle.read(CHUNK):
                decoder.decode(chunk)
                offset += len(chunk)
            decoder.decode(b"", final=True)
            return encoding
        except UnicodeDecodeError as exc:
            failures.append(f"{encoding} fails at byte {offset + exc.start}")
    raise _FileError(
        entity,
        f"{name}: the file is neither UTF-8 nor GBK text ({'; '.join(failures)}); "
        "save it as CSV UTF-8 or as .xlsx",
    )


def _delimiter(line: str) -> str:
    counts = {d: line.count(d) for d in (",", ";", "\t")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def _csv_rows(handle: IO[bytes], encoding: str) -> Iterator[tuple[int, list[Any]]]:
    text = io.TextIOWrapper(handle, encoding=encoding, newline="")
    try:
        first = text.readline()
        text.seek(0)
        yield from enumerate(csv.reader(text, delimiter=_delimiter(first)), start=1)
    finally:
        text.detach()  # the caller's handle stays open


def _xlsx_rows(handle: IO[bytes], entity: str, name: str) -> Iterator[tuple[int, list[Any]]]:
    import zipfile

    from openpyxl import load_workbook

    try:
        book = load_workbook(handle, read_only=True, data_only=True)
    except (zipfile.BadZipFile, KeyError, ValueError, OSError) as exc:
        raise _FileError(entity, f"{name}: not a readable .xlsx workbook ({exc})") from None
    try:
        sheet = book.worksheets[0]
        for number, cells in enumerate(sheet.iter_rows(values_only=True), start=1):
            yield number, list(cells)
    finally:
        book.close()


def _is_xlsx(handle: IO[bytes], name: str) -> bool:
    suffix = Path(name).suffix.lower()
    if suffix in (".xlsx", ".xlsm"):
        return True
    if suffix == ".xls":
        return False
    handle.seek(0)
    magic = handle.read(4)
    handle.seek(0)
    return magic == b"PK\x03\x04"


def _estimate(handle: IO[bytes], xlsx: bool) -> int | None:
    """About how many data rows the file has (for progress): line breaks of a CSV."""
    if xlsx:
        return None
    handle.seek(0)
    lines = 0
    last = b""
    while chunk := handle.read(CHUNK):
        lines += chunk.count(b"\n")
        last = chunk
    handle.seek(0)
    return max(lines - (0 if last.endswith(b"\n") else -1) - 1, 0)


# -- columns --------------------------------------------------------------------------------
def _key(text: str) -> str:
    """A header cell as compared: NFKC (full-width as half-width), case-folded, one space."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


@dataclass
class _Column:
    index: int
    header: str
    field: FieldSpec
    currency: bool = False  # the ``<money>_currency`` column
    convert: Callable[[Any], Any] | None = None


def _lookup(spec: EntitySpec) -> tuple[dict[str, set[tuple[str, bool]]], list[str]]:
    """Header key -> {(field, is currency column)}, and the columns to list in messages."""
    table: dict[str, set[tuple[str, bool]]] = {}
    shown = []

    def add(text: str, name: str, currency: bool = False) -> None:
        table.setdefault(_key(text), set()).add((name, currency))

    for f in spec:
        if f.internal:
            continue
        labels = {f.label, *f.labels.values()}
        for text in (f.name, *labels):
            add(text, f.name)
        shown.append(f"{f.name} ({' / '.join(sorted(labels, key=len))})")
        if f.type == "money":
            for text in (f.name + CURRENCY_SUFFIX, *currency_labels(f).values()):
                add(text, f.name, True)
    return table, shown


def _columns(
    engine: Engine, spec: EntitySpec, header: list[Any], actor: Actor, name: str
) -> tuple[list[_Column], list[str]]:
    """The import columns of a header row, and the columns ignored (with the reason)."""
    table, shown = _lookup(spec)
    columns: list[_Column] = []
    ignored: list[str] = []
    problems: list[str] = []
    taken: dict[tuple[str, bool], str] = {}
    texts = ["" if cell is None else str(cell).strip() for cell in header]
    while texts and not texts[-1]:
        texts.pop()  # empty cells after the last column (Excel keeps formatted ones)
    for index, text in enumerate(texts):
        letter = _letter(index)
        if not text:
            ignored.append(f"column {letter}: no header")
            continue
        matches = table.get(_key(text), set())
        named = _NAMED.match(text)
        if not matches and named and named.group(2) in spec.fields:
            matches = {(named.group(2), False)}
        if not matches:
            if text.lower() in BASE_FIELDS:
                problems.append(
                    f"column {letter} {text!r} is managed by the engine; remove the column"
                )
            else:
                problems.append(f"column {letter} {text!r} is not a field of {spec.name}")
            continue
        if len(matches) > 1:
            names = ", ".join(sorted(m[0] for m in matches))
            problems.append(f"column {letter} {text!r} could be any of {names}; use the field name")
            continue
        ((field_name, currency),) = matches
        f = spec.fields[field_name]
        if (field_name, currency) in taken:
            problems.append(
                f"columns {taken[(field_name, currency)]} and {letter} {text!r} both name "
                f"{field_name}{CURRENCY_SUFFIX if currency else ''}"
            )
            continue
        taken[(field_name, currency)] = f"{letter} {text!r}"
        if f.readonly and not actor.is_system:
            ignored.append(f"column {letter} {text!r}: {field_name} is read-only (computed)")
            continue
        columns.append(_Column(index, text, f, currency))
    if problems:
        raise _FileError(
            spec.name,
            f"{name}: "
            + "; ".join(problems)
            + f". The columns of {spec.name} are: "
            + ", ".join(shown),
        )
    names = {c.field.name for c in columns if not c.currency}
    for c in columns:
        if c.currency and c.field.name not in names:
            raise _FileError(
                spec.name,
                f"{name}: column {c.header!r} gives the currency of {c.field.name}, "
                f"but the file has no {c.field.name} column",
            )
    missing = [
        f"{f.name} ({f.label_in('zh') if 'zh' in f.labels else f.label})"
        for f in spec
        if f.required and f.default is None and f.name not in names and not f.readonly
    ]
    if missing:
        raise _FileError(
            spec.name,
            f"{name}: required column(s) missing: {', '.join(missing)}",
        )
    engine.policy.check_fields(spec, actor, "create", names)
    return columns, ignored


def _letter(index: int) -> str:
    """The spreadsheet letter of a 0-based column index (0 -> A, 26 -> AA)."""
    letters = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        letters = chr(65 + rest) + letters
    return letters


# -- cell converters --------------------------------------------------------------------------
class _Key(str):
    """A ref cell that is not (only) an id: resolved by the target's natural key."""


def _text(value: Any) -> str:
    if type(value) is str:
        return value
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # Excel keeps phone numbers and codes typed as numbers
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


def _number_text(value: Any) -> Any:
    if isinstance(value, str):
        text = value.strip().replace("\u00a0", "").replace(" ", "")
        return text.replace(",", "") if _GROUPED.match(text) else text
    return value


def _to_int(value: Any) -> Any:
    value = _number_text(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            return value  # the record API says what is wrong with it
    return value


def _to_decimal(value: Any) -> Any:
    value = _number_text(value)
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, str):
        try:
            return Decimal(value)
        except InvalidOperation:
            return value
    return value


def _money_converter(currency: str) -> Callable[[Any], Any]:
    def convert(value: Any) -> Any:
        if type(value) is not str:  # a CSV cell is text: it skips these checks
            if isinstance(value, int | float | Decimal) and not isinstance(value, bool):
                return Money(_to_decimal(value), currency)
        text = str(value).strip()
        try:
            return Money(Decimal(text), currency)  # a plain amount: the common case
        except InvalidOperation:
            pass
        match = _AMOUNT_CURRENCY.match(text) or _CURRENCY_AMOUNT.match(text)
        amount, cur = (match.group("a"), match.group("c").upper()) if match else (text, currency)
        number = _to_decimal(amount)
        if not isinstance(number, Decimal):
            raise ValueError(f"{text!r} is not an amount: write 12.50 or 12.50 EUR")
        return Money(number, cur)

    return convert


def _to_date(value: Any) -> date:
    if isinstance(value, datetime):
        if value.time() != datetime.min.time():
            raise ValueError(f"{value.isoformat(' ')} has a time; a date is wanted")
        return value.date()
    if isinstance(value, date):
        return value
    text = str(value).strip()
    try:  # the common cases, 2027-03-01 and 2027/3/1, without a regular expression
        if len(text) == 10 and text[4] == "-":
            return date.fromisoformat(text)
        parts = text.split("/")
        if len(parts) == 3 and len(parts[0]) == 4 and all(p.isdigit() for p in parts):
            return date(int(parts[0]), int(parts[1]), int(parts[2]))
    except ValueError:
        pass
    match = _DATE.match(text)
    try:
        if match:
            return date(*(int(g) for g in match.groups()))
        if len(text) > 10 and text[10] in " T" and text[11:].strip("0:. ") == "":
            return date.fromisoformat(text[:10])
        return date.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a date: write 2027-03-01 or 2027/3/1") from None


def _to_datetime(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day)
    text = str(value).strip()
    match = _DATETIME.match(text)
    try:
        if match:
            y, mo, d, h, mi, s, frac = match.groups()
            micro = int((frac or "0").ljust(6, "0"))
            return datetime(int(y), int(mo), int(d), int(h), int(mi), int(s or 0), micro)
        if _DATE.match(text):
            day = _to_date(text)
            return datetime(day.year, day.month, day.day)
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"{text!r} is not a date and time: write 2027-03-01T09:30:00 or 2027/3/1 9:30"
        ) from None
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(UTC).replace(tzinfo=None)
    return parsed


def _to_bool(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float) and value in (0, 1):
        return bool(value)
    word = str(value).strip().casefold()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ValueError(f"{value!r} is not true or false: write true/false, yes/no, 1/0 or 是/否")


def _enum_converter(f: FieldSpec) -> Callable[[Any], Any]:
    names: dict[str, str] = {}
    for choice in f.choices:
        for text in (choice.label, *choice.labels.values(), choice.value):
            names[_key(text)] = choice.value
    values = set(f.choice_values())

    def convert(value: Any) -> Any:
        text = _text(value).strip()
        if text in values:
            return text
        return names.get(_key(text), text)  # an unknown one: the record API lists choices

    return convert


def _to_json(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except ValueError as exc:
        raise ValueError(f"is not JSON: {exc}") from None


def _ref_converter(target: EntitySpec) -> Callable[[Any], Any]:
    def convert(value: Any) -> Any:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, int) and not isinstance(value, bool):
            return _Key(str(value)) if target.natural_key else value
        text = str(value).strip()
        if target.natural_key:
            return _Key(text)
        if text.isdigit():
            return int(text)
        raise ValueError(f"{text!r} is not the id of a {target.name}")

    return convert


def _converter(engine: Engine, f: FieldSpec) -> Callable[[Any], Any]:
    currency = engine.config.currency
    t = f.type
    if t in ("string", "email", "phone"):
        return _text
    if t == "text":
        return lambda value: value if isinstance(value, str) else _text(value)
    if t == "enum":
        return _enum_converter(f)
    if t == "int":
        return _to_int
    if t == "decimal":
        return _to_decimal
    if t == "float":
        return _number_text
    if t == "money":
        return _money_converter(currency)
    if t == "bool":
        return _to_bool
    if t == "date":  # a file's dates repeat: each text is parsed once per column
        return functools.lru_cache(maxsize=4096)(_to_date)
    if t == "datetime":
        return _to_datetime
    if t == "json":
        return _to_json
    if t == "ref":
        return _ref_converter(engine.registry[f.to])  # type: ignore[index]
    raise AssertionError(t)


def _currency(value: Any) -> str:
    text = str(value).strip().upper()
    if not re.fullmatch(r"[A-Z]{3}", text):
        raise ValueError(f"{value!r} is not a currency code such as CNY or EUR")
    return text


# -- the import -------------------------------------------------------------------------------
@dataclass
class _Row:
    number: int
    values: dict[str, Any]
    cells: list[Any]


class _Importer:
    def __init__(
        self,
        engine: Engine,
        spec: EntitySpec,
        actor: Actor,
        columns: list[_Column],
        result: ImportResult,
        on_duplicate: str,
    ) -> None:
        self.engine = engine
        self.records = engine.records
        self.spec = spec
        self.actor = actor
        self.columns = columns
        self.result = result
        self.on_duplicate = on_duplicate
        self.by_field = {c.field.name: c for c in columns if not c.currency}
        for c in columns:
            c.convert = _currency if c.currency else _converter(engine, c.field)
        #: per column, what convert() needs, looked up once
        self.plan = [(c.index, c.field.name, c.convert, c.currency) for c in columns]
        runtime = engine.runtime
        self.workflow = runtime.by_entity.get(spec.name) if runtime is not None else None
        self.natural_key = spec.natural_key
        self.matching = bool(spec.duplicate_keys or spec.natural_key)
        #: (key name, normalised value) -> the earlier row of the file that has it
        self.seen: dict[tuple[str, str], int] = {}
        #: row number -> id of the record the row created or updated
        self.written: dict[int, int] = {}
        #: rows with a problem (nothing of them is written)
        self.failed: set[int] = set()
        #: (entity, who looks) -> natural key -> id, of the refs found so far
        self.known: dict[tuple[str, int | None], dict[str, int]] = {}

    # -- problems --------------------------------------------------------------------------
    def problem(
        self, row: _Row, field_name: str | None, message: str, *, skipped: bool = False
    ) -> None:
        column = self.by_field.get(field_name) if field_name else None
        value = None
        if column is not None and column.index < len(row.cells):
            cell = row.cells[column.index]
            value = None if cell is None else _text(cell)
        if len(self.result.problems) < MAX_PROBLEMS:
            self.result.problems.append(
                RowProblem(
                    row.number,
                    column.header if column else field_name,
                    value,
                    message,
                    skipped=skipped,
                )
            )

    # -- one row ---------------------------------------------------------------------------
    def convert(self, number: int, cells: list[Any]) -> _Row | None:
        """The row's values, or None (and its problems reported) when a cell is bad."""
        values: dict[str, Any] = {}
        bad = False
        currencies: dict[str, str] = {}
        width = len(cells)
        for index, name, convert, currency in self.plan:
            cell = cells[index] if index < width else None
            if type(cell) is str:
                if not cell or cell.isspace():
                    continue
                if cell[0] == "'" and cell[1:2] in FORMULA_START:
                    cell = cell[1:]  # written so by exports, lest Excel run it as a formula
            elif cell is None:
                continue
            try:
                converted = convert(cell)
            except ValueError as exc:
                self.fail(_Row(number, values, cells), name, str(exc))
                bad = True
                continue
            if currency:
                currencies[name] = converted
            else:
                values[name] = converted
        row = _Row(number, values, cells)
        for name, cur in currencies.items():
            amount = values.get(name)
            if isinstance(amount, Money):
                values[name] = Money(amount.amount, cur)
        if self.workflow is not None and self.workflow.field in values:
            state = values.pop(self.workflow.field)
            if state != self.workflow.initial:
                self.fail(
                    row,
                    self.workflow.field,
                    f"a new {self.spec.name} starts in the initial state "
                    f"{self.workflow.initial!r} of workflow {self.workflow.name}; only its "
                    "transitions move it on: leave the column empty or write "
                    f"{self.workflow.initial!r}",
                )
                bad = True
        return None if bad else row

    # -- one batch ---------------------------------------------------------------------------
    def batch(self, rows: list[_Row]) -> None:
        """Write one batch. A row referring by natural key to another row of the batch
        (a branch naming its parent company) waits until that row is written: rounds go
        on while they make progress."""
        while rows:
            ready, waiting = self.resolve_refs(rows)
            creates, updates = self.duplicates(ready) if self.matching else (ready, [])
            self.create(creates)
            for row, target in updates:
                self.update(row, target)
            if len(waiting) == len(rows):
                for row in waiting:
                    name, value = self.waits_for(row)
                    self.fail(
                        row,
                        name,
                        f"no {self.spec.name} has {self.natural_key} {value!r}: the row that "
                        "has it was not imported",
                    )
                return
            rows = waiting

    def waits_for(self, row: _Row) -> tuple[str, str]:
        return next(
            (name, str(value))
            for name, value in row.values.items()
            if isinstance(value, _Key) and self.spec.fields[name].to == self.spec.name
        )

    def resolve_refs(self, rows: list[_Row]) -> tuple[list[_Row], list[_Row]]:
        """Natural keys of ref cells -> ids, one query per ref column and batch. Returns
        the rows ready to write and those waiting for another row of the batch."""
        bad: set[int] = set()
        waiting: set[int] = set()
        nk = self.natural_key
        batch_keys = (
            {str(r.values[nk]) for r in rows if r.values.get(nk) is not None} if nk else set()
        )
        for name, column in self.by_field.items():
            f = column.field
            if f.type != "ref":
                continue
            target = self.engine.registry[f.to]  # type: ignore[index]
            keys = {row.values[name] for row in rows if isinstance(row.values.get(name), _Key)}
            if not keys:
                continue
            found = self.natural_keys(target, f, keys)
            for row in rows:
                value = row.values.get(name)
                if not isinstance(value, _Key):
                    continue
                if value in found:
                    row.values[name] = found[value]
                elif target.name == self.spec.name and value in batch_keys:
                    waiting.add(row.number)
                elif value.isdigit():
                    row.values[name] = int(value)
                else:
                    key = target.natural_key
                    self.fail(row, name, f"no {target.name} has {key} {str(value)!r}")
                    bad.add(row.number)
        ready = [r for r in rows if r.number not in bad and r.number not in waiting]
        return ready, [r for r in rows if r.number in waiting and r.number not in bad]

    def natural_keys(self, target: EntitySpec, f: FieldSpec, keys: set[str]) -> dict[str, int]:
        """The ids of the ``target`` records having these natural keys (those found).

        Keys of other entities found by an earlier batch are taken from :attr:`known`:
        within the import's transaction only its own rows change, and those are of
        :attr:`spec` (whose keys an update may change, so they are looked up each time).
        """
        # as the record API checks refs: owners are looked up as the system
        who = SYSTEM if f.name == "owner" else self.actor
        key = target.natural_key
        found: dict[str, int] = {}
        if target.name != self.spec.name:
            known = self.known.setdefault((target.name, who.id), {})
            found = {k: known[k] for k in keys if k in known}
            keys = keys - found.keys()
        wanted = sorted(keys)
        for start in range(0, len(wanted), 500):
            query = self.records.scoped_query(target.name, who).filter(
                f"lambda x: x.{key} in keys", {}, {"keys": wanted[start : start + 500]}
            )
            pairs = select(f"(x.{key}, x.id) for x in query", {}, {"query": query})
            found.update((str(k), int(i)) for k, i in pairs)
        if target.name != self.spec.name:
            known.update(found)
        return found

    def duplicates(self, rows: list[_Row]) -> tuple[list[_Row], list[tuple[_Row, Any]]]:
        """Split a batch into rows to create and (row, target) updates; report or skip the
        duplicates ``on_duplicate`` does not update. A target is a record id, or
        ``("row", n)``: the record an earlier row ``n`` of the file wrote."""
        spec, matcher, nk = self.spec, self.engine.duplicates, self.natural_key
        by_key: dict[str, int] = {}
        if nk:
            wanted = sorted({str(r.values[nk]) for r in rows if r.values.get(nk) is not None})
            cls = self.engine.classes[spec.name]
            for start in range(0, len(wanted), 500):
                pairs = select(
                    f"(x.{nk}, x.id) for x in C if x.deleted_at is None and x.{nk} in keys",
                    {"C": cls},
                    {"keys": wanted[start : start + 500]},
                )
                by_key.update((str(k), int(i)) for k, i in pairs)
        found = (
            matcher.candidates_many(spec.name, [r.values for r in rows])
            if spec.duplicate_keys
            else [[] for _ in rows]
        )
        creates: list[_Row] = []
        updates: list[tuple[_Row, Any]] = []
        for row, candidates in zip(rows, found, strict=True):
            keys = list(matcher.keys(spec, row.values).items()) if spec.duplicate_keys else []
            if nk and row.values.get(nk) is not None:
                keys.insert(0, (nk, str(row.values[nk])))
            earlier = next((self.seen[k] for k in keys if k in self.seen), None)
            for k in keys:
                self.seen.setdefault(k, row.number)
            if nk and row.values.get(nk) is not None and str(row.values[nk]) in by_key:
                targets = [(by_key[str(row.values[nk])], (nk,), None)]
            else:
                targets = [(c.record_id, c.matched_keys, c.display) for c in candidates]
            if not targets and earlier is None:
                creates.append(row)
                continue
            if targets:
                shown = "; ".join(
                    f"{spec.name} #{rid}"
                    + (f" {name!r}" if name else "")
                    + f" (same {', '.join(ks)})"
                    for rid, ks, name in targets[:5]
                )
                field_name = targets[0][1][0].split("+")[0]
                what = f"is a duplicate of {shown}"
            else:
                same = [k for k, v in keys if self.seen.get((k, v)) == earlier]
                field_name = same[0].split("+")[0] if same else None
                what = f"is a duplicate of row {earlier} of this file (same {', '.join(same)})"
            if self.on_duplicate == "skip":
                self.result.skipped += 1
                self.problem(row, field_name, f"skipped: {what}", skipped=True)
            elif self.on_duplicate == "error":
                self.fail(
                    row,
                    field_name,
                    f"{what}; import with duplicates skipped or updated to go on",
                )
            elif len(targets) > 1:
                self.fail(row, field_name, f"{what}: cannot tell which one to update")
            else:
                updates.append((row, targets[0][0] if targets else ("row", earlier)))
        return creates, updates

    def fail(self, row: _Row, field_name: str | None, message: str) -> None:
        self.failed.add(row.number)
        self.problem(row, field_name, message)

    def create(self, rows: list[_Row]) -> None:
        if not rows:
            return
        problems: list[FieldProblem] = []
        ids = self.records.create_many(
            self.spec.name,
            [r.values for r in rows],
            actor=self.actor,
            batch_size=len(rows),
            allow_duplicate=True,
            skip_invalid=True,
            problems=problems,
            numbers=[r.number for r in rows],
        )
        by_number = {r.number: r for r in rows}
        for p in problems:
            row = by_number[p.row]  # type: ignore[index]
            self.fail(row, p.field, p.message)
        if self.on_duplicate == "update" and self.matching:  # later rows may update these
            written = [r for r in rows if r.number not in self.failed]
            for row, rid in zip(written, ids, strict=True):
                self.written[row.number] = rid
        self.result.created += len(ids)

    def update(self, row: _Row, target: Any) -> None:
        if isinstance(target, tuple):
            rid = self.written.get(target[1])
            if rid is None:
                self.fail(row, None, f"is a duplicate of row {target[1]}, which was not imported")
                return
        else:
            rid = target
        version = self.version(rid)
        try:
            self.records.update(
                self.spec.name, rid, row.values, actor=self.actor, allow_duplicate=True
            )
        except (ValidationError, PermissionDenied, NotFound, ConflictError) as exc:
            if self.version(rid) != version:
                # a plugin refused the update after it began writing: it cannot be left out
                exc.message = f"row {row.number}: {exc.message}; nothing was imported"
                exc.args = (exc.message,)
                raise
            if isinstance(exc, ValidationError):
                for p in exc.problems:
                    self.fail(row, p.field, f"cannot update {self.spec.name} #{rid}: {p.message}")
            else:
                field_name = exc.details.get("field")
                self.fail(row, field_name, f"cannot update {self.spec.name} #{rid}: {exc.message}")
            return
        self.written[row.number] = rid
        self.result.updated += 1

    def version(self, rid: int) -> int | None:
        obj = self.engine.classes[self.spec.name].get(id=rid)
        return obj.version if obj is not None else None


@contextmanager
def _large_cache(engine: Engine) -> Iterator[None]:
    """On SQLite, a page cache of :data:`SQLITE_CACHE_KIB` for the import's transaction
    (one transaction of many rows would otherwise spill and rewrite pages); the
    connection's own size is back before the commit."""
    if engine.db.provider.dialect != "SQLite":
        yield
        return
    cursor = engine.db.get_connection().cursor()
    cursor.execute("PRAGMA cache_size")
    before = int(cursor.fetchone()[0])
    cursor.execute(f"PRAGMA cache_size = -{SQLITE_CACHE_KIB}")
    try:
        yield
    finally:
        cursor.execute(f"PRAGMA cache_size = {before}")


def _open_rows(
    handle: IO[bytes], entity: str, name: str
) -> tuple[int | None, Iterator[tuple[int, list[Any]]]]:
    """(about how many data rows, the rows as (row number, cells))."""
    if Path(name).suffix.lower() == ".xls":
        raise _FileError(entity, f"{name}: old .xls workbooks are not read; save it as .xlsx")
    if _is_xlsx(handle, name):
        return None, _xlsx_rows(handle, entity, name)
    encoding = _encoding(handle, entity, name)
    total = _estimate(handle, xlsx=False)
    return total, _csv_rows(handle, encoding)


def _empty(cells: Iterable[Any]) -> bool:
    for c in cells:  # stops at the first cell with something in it
        if c is not None and not (isinstance(c, str) and (not c or c.isspace())):
            return False
    return True


def import_file(
    engine: Engine,
    entity: str,
    source: Path | str | IO[bytes],
    *,
    name: str | None = None,
    actor: Actor = SYSTEM,
    dry_run: bool = False,
    on_duplicate: str = "error",
    skip_errors: bool = False,
    batch_size: int = BATCH_SIZE,
    progress: Callable[[int, int | None], None] | None = None,
) -> ImportResult:
    """Import ``source`` (a path, or a binary file with its file ``name``) into ``entity``.

    Returns what was done; problems of single rows are in the result. A file that cannot
    be imported at all (unknown entity or column, unreadable encoding, a required column
    missing, a column the actor may not write) raises ValidationError, naming the file and
    listing the columns the entity has; nothing is written then.
    """
    spec = engine.registry.get(entity)
    if spec is None:
        raise ValidationError(
            FieldProblem(
                entity, None, f"is not a known entity; known: {', '.join(engine.registry.names())}"
            )
        )
    if on_duplicate not in ON_DUPLICATE:
        raise ValidationError(
            FieldProblem(
                entity,
                "on_duplicate",
                f"{on_duplicate!r} is not one of {', '.join(ON_DUPLICATE)}",
            )
        )
    if name is None:
        name = Path(source).name if isinstance(source, Path | str) else "the file"
    handle, opened = _binary(source)
    rows: Iterator[tuple[int, list[Any]]] | None = None
    try:
        total, rows = _open_rows(handle, spec.name, name)
        header = next(rows, None)
        if header is None or _empty(header[1]):
            raise _FileError(spec.name, f"{name}: row 1 must hold the column names")
        columns, ignored = _columns(engine, spec, header[1], actor, name)
        result = ImportResult(spec.name, dry_run=dry_run, ignored_columns=ignored)
        importer = _Importer(engine, spec, actor, columns, result, on_duplicate)
        try:
            with engine.records.transaction(write=True), _large_cache(engine):
                batch: list[_Row] = []
                for number, cells in rows:
                    if _empty(cells):
                        continue
                    result.rows += 1
                    row = importer.convert(number, cells)
                    if row is None:
                        importer.failed.add(number)
                        continue
                    batch.append(row)
                    if len(batch) >= batch_size:
                        importer.batch(batch)
                        batch = []
                        if progress is not None:
                            progress(result.rows, total)
                if batch:
                    importer.batch(batch)
                if progress is not None:
                    progress(result.rows, result.rows)
                result.failed = len(importer.failed)
                if dry_run or (result.failed and not skip_errors):
                    raise _Rollback
                result.written = True
        except _Rollback:
            pass
        return result
    finally:
        if rows is not None:
            rows.close()  # type: ignore[attr-defined] - a generator: let go of the file
        if opened:
            handle.close()
