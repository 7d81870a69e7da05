"""Import throughput: validated rows per second of an orders CSV, next to raw sqlite3.

    .venv/bin/python bench/import.py [--rows 1000000] [--customers 1000] [--sales]

Sets up a throw-away GUANXI_HOME on SQLite whose admin entities (entities/orders.yaml)
are a Customer with a natural key and an Order (a ref to the customer, a date, money, an
enum and a text), or with ``--sales`` the sales plugin's own Customer and Order (its
``before_commit`` hook then runs for every order). It creates the customers, writes an
orders CSV of ``--rows`` rows (customers by code, dates as 2027-03-01 and 2027/3/1,
amounts as 12.50 and 12.50 EUR) into the temp folder and then, in the same run:

- **guanxi**: ``guanxi.engine.importer.import_file`` as the system: every cell converted,
  every row validated by the record API (refs by natural key, one query per batch), each
  record written with its audit event through ``create_many``, hooks called, all in one
  transaction;
- **raw sqlite3**: the same file read with the csv module and its rows (customer ids
  looked up in a dict) written with ``executemany`` into a database made from the same
  DDL (indexes and foreign keys included, the customers copied), with the same PRAGMAs,
  in one transaction; no validation, no audit.

It prints rows, seconds and rows/s of both - by the clock, and by the CPU time of the
process (what other work on a shared machine does not change) - and the ratios, checks
both tables hold every row, and deletes the folder. Figures move with the machine; the
ratio is what compares.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import shutil
import sqlite3
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

ENTITIES_YAML = """\
# An orders file's entities, as an admin writes them.
entities:
  - name: Customer
    label: Customer
    labels: {zh: 客户}
    natural_key: code
    fields:
      code: {type: string, required: true, unique: true, max_length: 40, labels: {zh: 编号}}
      name: {type: string, required: true, max_length: 200, labels: {zh: 名称}}
  - name: Order
    label: Order
    labels: {zh: 订单}
    fields:
      customer: {type: ref, to: Customer, required: true, reverse: orders, labels: {zh: 客户}}
      ordered_on: {type: date, required: true, indexed: true, labels: {zh: 下单日期}}
      amount: {type: money, min: 0, labels: {zh: 金额}}
      status:
        type: enum
        default: open
        labels: {zh: 状态}
        choices: [open, paid, cancelled]
      note: {type: string, max_length: 200, labels: {zh: 备注}}
"""
SALES_HEADER = ["customer", "ordered_on", "amount"]
HEADER = [*SALES_HEADER, "status", "note"]
START = date(2026, 1, 1)


def write_orders(path: Path, rows: int, customers: int, sales: bool) -> None:
    rng = random.Random(1)
    statuses = ("open", "paid", "cancelled")
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\r\n")
        writer.writerow(SALES_HEADER if sales else HEADER)
        for i in range(rows):
            day = START + timedelta(days=i % 700)
            when = day.isoformat() if i % 2 else f"{day.year}/{day.month}/{day.day}"
            cents = rng.randrange(100, 10_000_000)
            amount = f"{cents // 100}.{cents % 100:02d}" + (" EUR" if i % 10 == 0 else "")
            row = [f"C-{i % customers:05d}", when, amount]
            if not sales:
                row += [statuses[i % 3], f"order {i}"]
            writer.writerow(row)


def guanxi_import(home: Path, path: Path, customers: int, sales: bool) -> tuple[float, float, int]:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from guanxi.engine import Config, Engine
    from guanxi.engine.importer import import_file

    plugins = ("sales",) if sales else ()
    engine = Engine(
        Config(home=home, database_url=f"sqlite:///{home / 'guanxi.db'}", plugins=plugins)
    )
    engine.open(migrate=True)
    try:
        engine.records.create_many(
            "Customer", [{"name": f"Customer {i}", "code": f"C-{i:05d}"} for i in range(customers)]
        )
        with Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            transient=True,
        ) as bar:
            task = bar.add_task("guanxi import", total=None)
            started, cpu = time.perf_counter(), time.process_time()
            result = import_file(
                engine,
                "Order",
                path,
                progress=lambda done, total: bar.update(task, completed=done, total=total),
            )
            seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        if result.errors or not result.written:
            sys.exit(f"the import failed: {result.errors[:5]}")
        written = engine.records.list("Order", first=0).total_count
        return seconds, cpu, written
    finally:
        engine.close()


def raw_import(
    home: Path, path: Path, audited: bool = False
) -> tuple[float, float, int, tuple[float, float]]:
    """The same rows with sqlite3 alone, into a table of the same DDL; ``audited``: each
    with an audit row as well, its changes as JSON, as guanxi writes them. Returns
    seconds, CPU seconds, rows written, and (seconds, CPU seconds) of the database's own
    part: the ``executemany`` calls and the commit, of rows made beforehand."""
    source = sqlite3.connect(home / "guanxi.db")
    ddl = [  # every table (foreign keys need their targets), then the indexes
        sql
        for (sql,) in source.execute(
            "SELECT sql FROM sqlite_master WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite_%' "
            "ORDER BY type DESC"
        )
    ]
    customers = dict(source.execute('SELECT code, id FROM "customer"').fetchall())
    source.close()
    target = home / ("raw-audited.db" if audited else "raw.db")
    db = sqlite3.connect(target, isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = FULL")
    db.execute("PRAGMA foreign_keys = ON")
    for sql in ddl:
        db.execute(sql)
    db.execute("ATTACH DATABASE ? AS source", (str(home / "guanxi.db"),))
    db.execute('INSERT INTO "customer" SELECT * FROM source."customer"')
    db.execute("DETACH DATABASE source")
    now = "2027-03-01 09:00:00.000000"
    started, cpu = time.perf_counter(), time.process_time()
    db.execute("BEGIN IMMEDIATE")
    with open(path, encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle)
        next(reader)
        rows = []
        for cells in reader:
            amount, _, currency = cells[2].partition(" ")
            day = cells[1].replace("/", "-")
            rest = cells[3:] if len(cells) > 3 else []
            rows.append((now, now, 1, customers[cells[0]], day, amount, currency or "CNY", *rest))
    columns = '"created_at", "updated_at", "version", "customer", "ordered_on", "amount", '
    columns += '"amount_currency"' + (', "status", "note"' if len(rows[0]) > 7 else "")
    marks = ", ".join("?" * len(rows[0]))
    audit = []
    if audited:  # ids given, so the audit rows can name them
        rows = [(i, *row) for i, row in enumerate(rows, 1)]
        columns, marks = f'"id", {columns}', f"?, {marks}"
        names = ("customer", "ordered_on", "amount", "status", "note")
        for row in rows:
            changes = dict(zip(names, row[4:5] + row[5:6] + row[8:], strict=False))
            changes["amount"] = {"amount": row[6], "currency": row[7]}
            text = json.dumps(
                {k: [None, v] for k, v in sorted(changes.items())},
                ensure_ascii=False,
                separators=(",", ":"),
            )
            audit.append(("Order", row[0], "create", None, "system", now, text))
    writing, writing_cpu = time.perf_counter(), time.process_time()
    db.executemany(f'INSERT INTO "order" ({columns}) VALUES ({marks})', rows)
    if audited:
        db.executemany(
            'INSERT INTO "guanxi_audit" ("entity", "record_id", "action", "actor_id", "actor", '
            '"at", "changes") VALUES (?, ?, ?, ?, ?, ?, ?)',
            audit,
        )
    db.execute("COMMIT")
    done, done_cpu = time.perf_counter(), time.process_time()
    seconds, cpu = done - started, done_cpu - cpu
    #: the database's own part: executemany and commit of rows made beforehand
    database = (done - writing, done_cpu - writing_cpu)
    written = db.execute('SELECT COUNT(*) FROM "order"').fetchone()[0]
    db.close()
    return seconds, cpu, written, database


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="orders in the file")
    parser.add_argument("--customers", type=int, default=1000, help="customers they refer to")
    parser.add_argument(
        "--sales", action="store_true", help="the sales plugin's Customer and Order (its hooks)"
    )
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="guanxi-bench-import-"))
    try:
        if not args.sales:
            (home / "entities").mkdir()
            (home / "entities" / "orders.yaml").write_text(ENTITIES_YAML, encoding="utf-8")
        path = home / "orders.csv"
        write_orders(path, args.rows, args.customers, args.sales)
        size = path.stat().st_size / 1e6
        print(
            f"orders.csv: {args.rows:,} rows, {size:,.1f} MB; SQLite, {args.customers:,} customers"
        )
        print("entities:", "the sales plugin's" if args.sales else "entities/orders.yaml")
        ours, ours_cpu, ours_rows = guanxi_import(home, path, args.customers, args.sales)
        raw, raw_cpu, raw_rows, _ = raw_import(home, path)
        audited, audited_cpu, audited_rows, database = raw_import(home, path, audited=True)
        assert ours_rows == raw_rows == audited_rows == args.rows, (ours_rows, raw_rows)
        print(f"{'':<28}{'rows':>11}{'seconds':>9}{'rows/s':>10}{'CPU s':>8}{'rows/CPU s':>12}")
        for label, seconds, cpu in (
            ("guanxi import (validated)", ours, ours_cpu),
            ("raw sqlite3 executemany", raw, raw_cpu),
            ("raw, with audit rows", audited, audited_cpu),
            ("  its executemany + commit", *database),
        ):
            print(
                f"{label:<28}{args.rows:>11,}{seconds:>9.2f}{args.rows / seconds:>10,.0f}"
                f"{cpu:>8.2f}{args.rows / cpu:>12,.0f}"
            )
        for label, base, base_cpu in (
            ("guanxi / raw", raw, raw_cpu),
            ("guanxi / raw with audit", audited, audited_cpu),
        ):
            ratio = f"{base / ours:>10.3f}{'':>8}{base_cpu / ours_cpu:>12.3f}"
            print(f"{label:<28}{'':>11}{'':>9}{ratio}")
    finally:
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
