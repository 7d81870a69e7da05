"""Importing spreadsheets (engine/importer.py, ``guanxi import``) with the sales plugin.

Files are made here the way Excel writes them: CSV with CRLF line ends, UTF-8 with or
without BOM or GBK, and .xlsx workbooks (openpyxl). Row numbers are the spreadsheet's:
the header is row 1.
"""

from __future__ import annotations

import csv
import io
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from guanxi.engine import Config, Engine, Money, ValidationError
from guanxi.engine.importer import import_file, write_report
from guanxi.plugins import sales

from .conftest import cli_in_home

CUSTOMER_HEADER = ["名称", "编号", "客户级别", "行业", "地区", "电话", "信用等级"]


def table(rows: list[list[object]]) -> str:
    """Rows as CSV text with Excel's CRLF line ends."""
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerows(rows)
    return buffer.getvalue()


def write_csv(path: Path, rows: list[list[object]], encoding: str = "utf-8-sig") -> Path:
    path.write_bytes(table(rows).encode(encoding))
    return path


def write_xlsx(path: Path, rows: list[list[object]]) -> Path:
    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    for row in rows:
        sheet.append(row)
    book.save(path)
    return path


def customer_rows(count: int) -> list[list[object]]:
    return [CUSTOMER_HEADER] + [
        [f"四川酒业{i}号", f"C-{i:05d}", "重点客户" if i % 3 == 0 else "普通客户", "酒类", "西南",
         f"028-{8000_0000 + i}", str(1 + i % 5)]
        for i in range(1, count + 1)
    ]  # fmt: skip


@pytest.fixture
def engine(make_engine, clock):
    return make_engine(sales, clock=clock)


@pytest.fixture
def people(engine):
    """Team East with customer managers li and wang; zhao (West) owns one customer."""
    engine.records.create("Team", {"name": "East"})
    engine.records.create("Team", {"name": "West"})
    ids = {
        name: engine.auth.create_user(name, roles=["customer_manager"], team=team).id
        for name, team in (("li", "East"), ("wang", "East"), ("zhao", "West"))
    }
    return {name: engine.auth.actor_for(uid) for name, uid in ids.items()}


def customers(engine, **flt):
    return engine.records.list("Customer", filter=flt or None, first=200).records


def count(engine, entity):
    return engine.records.list(entity, first=0).total_count


# -- the GBK file, through the command line -----------------------------------------
@pytest.fixture
def guanxi(tmp_path, database_url):
    """Run ``guanxi ARGS`` (click's CliRunner) on an initialised installation with sales."""
    home, run = cli_in_home(tmp_path, database_url)
    run.config = Config(home=home, database_url=database_url, plugins=("sales",))  # type: ignore[attr-defined]
    return run


@pytest.fixture
def installed(guanxi):
    engine = Engine(guanxi.config)
    engine.open()
    yield engine
    engine.close()


@pytest.fixture
def gbk_file(tmp_path):
    """10,000 customers as Excel saves CSV on Chinese Windows: GBK, CRLF, Chinese headers;
    data row 5,000 (spreadsheet row 5,001) has a credit rating of 五."""
    rows = customer_rows(10_000)
    rows[5000][6] = "五"
    return write_csv(tmp_path / "客户.csv", rows, encoding="gbk")


def test_a_gbk_file_with_one_bad_row_writes_nothing_and_reports_row_column_and_reason(
    guanxi, installed, gbk_file, tmp_path
):
    report = tmp_path / "report.csv"
    result = guanxi("import", "Customer", str(gbk_file), "--report", str(report))
    assert result.exit_code == 1
    assert "nothing was written" in result.stdout
    assert "row 5001, 信用等级 ('五'): must be a whole number" in result.stderr
    lines = list(csv.reader(report.read_text(encoding="utf-8-sig").splitlines()))
    assert lines == [
        ["row", "column", "value", "message"],
        ["5001", "信用等级", "五", "must be a whole number"],
    ]
    assert count(installed, "Customer") == 0


def test_with_skip_errors_the_good_rows_of_the_gbk_file_are_written(guanxi, installed, gbk_file):
    result = guanxi("import", "Customer", str(gbk_file), "--skip-errors")
    assert result.exit_code == 0, result.output
    assert "9,999 created" in result.stdout
    assert count(installed, "Customer") == 9_999
    assert not customers(installed, code={"eq": "C-05000"})
    first = customers(installed, code={"eq": "C-00003"})[0]
    assert (first.name, first.level, first.region, first.credit_rating) == (
        "四川酒业3号",
        "key",
        "西南",
        4,
    )


def test_the_import_command_names_an_unknown_entity_and_lists_the_known_ones(guanxi, tmp_path):
    path = write_csv(tmp_path / "x.csv", [["name"], ["a"]])
    result = guanxi("import", "Kunde", str(path))
    assert result.exit_code == 1
    assert "Kunde" in result.output and "Customer" in result.output and "Order" in result.output


# -- reading files --------------------------------------------------------------------------
@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "gbk", "utf-16"])
def test_utf8_with_or_without_bom_gbk_and_utf16_read_alike(engine, tmp_path, encoding):
    path = write_csv(tmp_path / "c.csv", customer_rows(3), encoding=encoding)
    result = import_file(engine, "Customer", path)
    assert (result.created, result.written) == (3, True)
    assert sorted(c.name for c in customers(engine)) == [
        "四川酒业1号",
        "四川酒业2号",
        "四川酒业3号",
    ]


def test_a_file_neither_utf8_nor_gbk_is_refused_naming_the_byte(engine, tmp_path):
    path = tmp_path / "c.csv"
    path.write_bytes(b"name\r\n\xff\xfe\xfd\r\n")
    with pytest.raises(ValidationError, match=r"c\.csv: the file is neither UTF-8 nor GBK"):
        import_file(engine, "Customer", path)


def test_an_xlsx_workbook_is_read_from_its_first_sheet(engine, tmp_path):
    rows = customer_rows(2)
    rows[1][6] = 4  # numbers stay numbers in a workbook
    path = write_xlsx(tmp_path / "c.xlsx", rows)
    result = import_file(engine, "Customer", path)
    assert result.created == 2
    assert customers(engine, code={"eq": "C-00001"})[0].credit_rating == 4


def test_headers_are_field_names_or_labels_in_either_language(engine, tmp_path):
    path = write_csv(
        tmp_path / "c.csv", [["name", "CODE", "客户级别"], ["Acme", "A-1", "Key customer"]]
    )
    import_file(engine, "Customer", path)
    (acme,) = customers(engine)
    assert (acme.name, acme.code, acme.level) == ("Acme", "A-1", "key")


def test_an_unknown_column_refuses_the_file_listing_the_columns_and_writes_nothing(
    engine, tmp_path
):
    path = write_csv(tmp_path / "c.csv", [["名称", "微信"], ["Acme", "acme88"]])
    with pytest.raises(ValidationError) as info:
        import_file(engine, "Customer", path)
    message = str(info.value)
    assert "column B '微信' is not a field of Customer" in message
    assert "name (名称 / Name)" in message and "phone (电话 / Phone)" in message
    assert count(engine, "Customer") == 0


def test_a_missing_required_column_refuses_the_file(engine, tmp_path):
    path = write_csv(tmp_path / "c.csv", [["编号"], ["A-1"]])
    with pytest.raises(ValidationError, match=r"required column\(s\) missing: name \(名称\)"):
        import_file(engine, "Customer", path)


def test_a_column_without_a_header_is_ignored_and_said_so(engine, tmp_path):
    rows = [["name", "", "code", "", ""], ["Acme", "scribble", "A-1", "", ""]]
    result = import_file(engine, "Customer", write_csv(tmp_path / "c.csv", rows))
    assert result.ignored_columns == ["column B: no header"]  # not the empty ones after C
    assert customers(engine)[0].code == "A-1"


def test_row_numbers_are_the_spreadsheets_with_blank_rows_and_cells_over_two_lines(
    engine, tmp_path
):
    text = 'name,notes\r\nA,"two\r\nlines"\r\n\r\nB,x\r\n,missing name\r\n'
    path = tmp_path / "c.csv"
    path.write_text(text, encoding="utf-8")
    result = import_file(engine, "Customer", path)
    assert [(p.row, p.column, p.message) for p in result.problems] == [(5, "name", "is required")]
    assert result.rows == 3


# -- values ---------------------------------------------------------------------------------
@pytest.fixture
def acme(engine):
    return engine.records.create("Customer", {"name": "Acme", "code": "C-001"})


def test_refs_take_the_natural_key_or_the_id(engine, tmp_path, acme):
    path = write_csv(
        tmp_path / "o.csv",
        [["customer", "ordered_on"], ["C-001", "2027-03-01"], [str(acme.id), "2027-03-02"]],
    )
    assert import_file(engine, "Order", path).created == 2
    assert {o.customer for o in engine.records.list("Order").records} == {acme.id}


def test_a_ref_that_matches_nothing_is_a_row_problem(engine, tmp_path, acme):
    path = write_csv(tmp_path / "o.csv", [["客户", "下单日期"], ["C-404", "2027-03-01"]])
    result = import_file(engine, "Order", path)
    assert [(p.row, p.column, p.value, p.message) for p in result.problems] == [
        (2, "客户", "C-404", "no Customer has code 'C-404'")
    ]
    assert not result.written


def test_a_row_may_name_another_row_of_the_file_as_its_ref(engine, tmp_path):
    path = write_csv(
        tmp_path / "c.csv",
        [["name", "code", "parent"], ["Branch", "B-1", "H-1"], ["Head office", "H-1", ""]],
    )
    assert import_file(engine, "Customer", path).created == 2
    head = customers(engine, code={"eq": "H-1"})[0]
    assert customers(engine, code={"eq": "B-1"})[0].parent == head.id


def test_money_takes_an_amount_an_amount_with_currency_or_a_currency_column(engine, tmp_path, acme):
    path = write_csv(
        tmp_path / "o.csv",
        [
            ["customer", "ordered_on", "amount", "金额币种"],
            ["C-001", "2027-03-01", "12.50", ""],
            ["C-001", "2027-03-02", "12.50 EUR", ""],
            ["C-001", "2027-03-03", "1,200.5", "usd"],
        ],
    )
    import_file(engine, "Order", path)
    amounts = [o.amount for o in engine.records.list("Order", order_by=[{"id": "ASC"}]).records]
    assert amounts == [
        Money(Decimal("12.50"), "CNY"),
        Money(Decimal("12.50"), "EUR"),
        Money(Decimal("1200.50"), "USD"),
    ]


def test_dates_take_iso_and_slashes(engine, tmp_path, acme):
    path = write_csv(
        tmp_path / "o.csv",
        [["customer", "ordered_on"], ["C-001", "2027-03-01"], ["C-001", "2027/3/2"]],
    )
    import_file(engine, "Order", path)
    days = sorted(o.ordered_on for o in engine.records.list("Order").records)
    assert days == [date(2027, 3, 1), date(2027, 3, 2)]


def test_bad_cells_are_problems_of_their_row_with_the_cell_as_written(engine, tmp_path, acme):
    path = write_csv(
        tmp_path / "o.csv",
        [
            ["customer", "ordered_on", "amount"],
            ["C-001", "3/1/2027", "10"],
            ["C-001", "2027-03-01", "ten yuan"],
            ["C-001", "2027-03-01", "-5"],
        ],
    )
    result = import_file(engine, "Order", path)
    assert [(p.row, p.column, p.value, p.message) for p in result.problems] == [
        (2, "ordered_on", "3/1/2027", "'3/1/2027' is not a date: write 2027-03-01 or 2027/3/1"),
        (3, "amount", "ten yuan", "'ten yuan' is not an amount: write 12.50 or 12.50 EUR"),
        (4, "amount", "-5", "must be at least 0"),
    ]
    assert (result.failed, result.written) == (3, False)


# -- all or nothing, dry runs, the report ---------------------------------------------------
def test_a_bad_row_in_a_later_batch_undoes_the_earlier_batches(engine, tmp_path):
    rows = customer_rows(25)
    rows[23][0] = ""  # no name
    path = write_csv(tmp_path / "c.csv", rows)
    result = import_file(engine, "Customer", path, batch_size=10)
    assert [(p.row, p.message) for p in result.errors] == [(24, "is required")]
    assert result.created == 24 and not result.written
    assert count(engine, "Customer") == 0


def test_a_dry_run_reports_what_it_would_do_and_writes_nothing(engine, tmp_path):
    path = write_csv(tmp_path / "c.csv", customer_rows(5))
    result = import_file(engine, "Customer", path, dry_run=True)
    assert (result.rows, result.created, result.written, result.dry_run) == (5, 5, False, True)
    assert count(engine, "Customer") == 0


def test_the_report_lists_row_column_value_and_message(engine, tmp_path, acme):
    path = write_csv(tmp_path / "o.csv", [["customer", "ordered_on"], ["C-9", "2027-03-01"]])
    report = tmp_path / "report.csv"
    write_report(import_file(engine, "Order", path), report)
    assert report.read_text(encoding="utf-8-sig").splitlines() == [
        "row,column,value,message",
        "2,customer,C-9,no Customer has code 'C-9'",
    ]


def test_every_imported_record_is_audited_as_created(engine, tmp_path):
    import_file(engine, "Customer", write_csv(tmp_path / "c.csv", customer_rows(2)))
    for customer in customers(engine):
        (event,) = engine.records.audit_trail("Customer", customer.id)
        assert event["action"] == "create" and event["actor"] == "system"
        assert event["changes"]["name"] == [None, customer.name]


def customer_selects(engine) -> int:
    return sum(
        stat.db_count
        for sql, stat in engine.db.local_stats.items()
        if sql and sql.lstrip().upper().startswith("SELECT") and 'FROM "customer"' in sql
    )


def test_natural_keys_are_resolved_with_one_query_per_batch(engine, tmp_path):
    engine.records.create_many("Customer", [{"name": f"c{i}", "code": f"K{i}"} for i in range(60)])
    rows = [["customer", "ordered_on"]] + [[f"K{i}", "2027-03-01"] for i in range(60)]
    path = write_csv(tmp_path / "o.csv", rows)
    engine.db.merge_local_stats()
    assert import_file(engine, "Order", path, batch_size=20).created == 60
    assert customer_selects(engine) == 2 * 3  # natural keys, and the record API's ref check


def test_natural_keys_found_once_are_not_looked_up_again(engine, tmp_path):
    engine.records.create_many("Customer", [{"name": f"c{i}", "code": f"K{i}"} for i in range(10)])
    rows = [["customer", "ordered_on"]] + [[f"K{i % 10}", "2027-03-01"] for i in range(60)]
    path = write_csv(tmp_path / "o.csv", rows)
    engine.db.merge_local_stats()
    result = import_file(engine, "Order", path, batch_size=20)
    assert result.created == 60
    assert customer_selects(engine) == 1 + 3  # the keys in the first batch; refs per batch
    orders = engine.records.list("Order", first=100, order_by=[{"id": "ASC"}]).records
    codes = {c.id: c.code for c in customers(engine)}
    assert [codes[o.customer] for o in orders] == [f"K{i % 10}" for i in range(60)]


# -- duplicates ----------------------------------------------------------------------------------
@pytest.fixture
def known(engine):
    return engine.records.create(
        "Customer", {"name": "成都酒业有限公司", "code": "C-001", "phone": "028-88886666"}
    )


def dup_file(tmp_path):
    return write_csv(
        tmp_path / "c.csv",
        [
            ["名称", "编号", "电话", "地区"],
            ["成都酒业", "C-002", "", "西南"],  # same name as the known one
            ["新客户", "C-003", "", ""],
            ["另一家", "C-001", "", "华北"],  # the known one's code
            ["新客户有限公司", "C-004", "", ""],  # same name as row 3
        ],
    )


def test_on_duplicate_error_reports_rows_like_records_or_earlier_rows(engine, tmp_path, known):
    result = import_file(engine, "Customer", dup_file(tmp_path))
    assert [(p.row, p.column, p.message) for p in result.problems] == [
        (2, "名称", f"is a duplicate of Customer #{known.id} '成都酒业有限公司' (same name); "
         "import with duplicates skipped or updated to go on"),
        (4, "编号", f"is a duplicate of Customer #{known.id} (same code); "
         "import with duplicates skipped or updated to go on"),
        (5, "名称", "is a duplicate of row 3 of this file (same name); "
         "import with duplicates skipped or updated to go on"),
    ]  # fmt: skip
    assert count(engine, "Customer") == 1


def test_on_duplicate_skip_leaves_them_out_and_lists_them(engine, tmp_path, known):
    result = import_file(engine, "Customer", dup_file(tmp_path), on_duplicate="skip")
    assert (result.created, result.skipped, result.written) == (1, 3, True)
    assert all(p.skipped and p.message.startswith("skipped: ") for p in result.problems)
    assert sorted(c.code for c in customers(engine)) == ["C-001", "C-003"]


def test_on_duplicate_update_writes_the_rows_cells_over_the_record_they_match(
    engine, tmp_path, known
):
    result = import_file(engine, "Customer", dup_file(tmp_path), on_duplicate="update")
    assert (result.created, result.updated, result.failed) == (1, 3, 0)
    updated = engine.records.get("Customer", known.id)
    # row 2 matched by name, then row 4 by code: the later row wins; empty cells change nothing
    assert (updated.name, updated.code, updated.region, updated.phone) == (
        "另一家",
        "C-001",
        "华北",
        "028-88886666",
    )
    (new,) = customers(engine, name={"startsWith": "新客户"})
    assert (new.name, new.code) == ("新客户有限公司", "C-004")  # row 5 updated row 3's record
    assert count(engine, "Customer") == 2


# -- workflows and permissions ---------------------------------------------------------------
def test_a_workflow_bound_record_starts_in_the_initial_state_which_is_all_a_file_may_name(
    engine, tmp_path, acme
):
    path = write_csv(
        tmp_path / "o.csv",
        [
            ["名称", "客户", "stage"],
            ["Subscriptions", "C-001", "寻找准客户"],
            ["Booth", "C-001", ""],
            ["Ads", "C-001", "proposal"],
        ],
    )
    result = import_file(engine, "Opportunity", path, skip_errors=True)
    assert [(p.row, p.column) for p in result.problems] == [(4, "stage")]
    assert "starts in the initial state 'lead'" in result.problems[0].message
    opportunities = engine.records.list("Opportunity").records
    assert sorted(o.stage for o in opportunities) == ["lead", "lead"]
    history = engine.runtime.history("Opportunity", opportunities[0].id)
    assert [h["to_state"] for h in history] == ["lead"]


def test_a_system_import_leaves_owned_records_unowned_in_the_shared_pool(engine, tmp_path):
    import_file(engine, "Customer", write_csv(tmp_path / "c.csv", customer_rows(2)))
    assert [c.owner for c in customers(engine)] == [None, None]


def test_an_import_as_a_user_makes_the_records_theirs(engine, tmp_path, people):
    path = write_csv(tmp_path / "c.csv", customer_rows(2))
    import_file(engine, "Customer", path, actor=people["li"])
    assert {c.owner for c in customers(engine)} == {people["li"].id}


def test_an_import_as_a_user_cannot_reach_records_they_may_not_read(engine, tmp_path, people):
    theirs = engine.records.create(
        "Customer", {"name": "West Co", "code": "W-1"}, actor=people["zhao"]
    )
    path = write_csv(
        tmp_path / "o.csv",
        [["customer", "ordered_on"], ["W-1", "2027-03-01"], [str(theirs.id), "2027-03-01"]],
    )
    result = import_file(engine, "Order", path, actor=people["li"])
    assert [(p.row, p.message) for p in result.problems] == [
        (2, "no Customer has code 'W-1'"),
        (3, f"Customer #{theirs.id} does not exist"),
    ]
    assert count(engine, "Order") == 0


def test_read_only_columns_are_ignored_for_users_and_said_so(engine, tmp_path, people):
    path = write_csv(tmp_path / "c.csv", [["name", "最近跟进"], ["Acme", "2027-03-01 09:00:00"]])
    result = import_file(engine, "Customer", path, actor=people["li"])
    assert result.ignored_columns == [
        "column B '最近跟进': last_activity_at is read-only (computed)"
    ]
    assert customers(engine)[0].last_activity_at is None
