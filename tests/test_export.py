"""Exporting records (engine/exporter.py, ``guanxi export``, ``guanxi audit``) with the
sales plugin: the round trip through the importer, columns and labels, the export
permission of roles.yaml and the audit of every export and every refusal."""

from __future__ import annotations

import csv
import io
from decimal import Decimal
from pathlib import Path

import pytest

from guanxi.engine import Config, Engine, Money, PermissionDenied, ValidationError
from guanxi.engine.exporter import CHUNK, Export, export_file
from guanxi.engine.importer import import_file
from guanxi.plugins import sales

from .conftest import cli_in_home

BASE = {"id", "created_at", "updated_at", "created_by", "version", "deleted_at"}


@pytest.fixture
def engine(make_engine, clock):
    return make_engine(sales, clock=clock)


@pytest.fixture
def people(engine):
    """li and wang (customer managers, East), zhao (West), chen (supervisor, East)."""
    engine.records.create("Team", {"name": "East"})
    engine.records.create("Team", {"name": "West"})
    cast = {
        "li": ("customer_manager", "East"),
        "wang": ("customer_manager", "East"),
        "zhao": ("customer_manager", "West"),
        "chen": ("sales_supervisor", "East"),
    }
    ids = {
        name: engine.auth.create_user(name, roles=[role], team=team).id
        for name, (role, team) in cast.items()
    }
    return {name: engine.auth.actor_for(uid) for name, uid in ids.items()}


@pytest.fixture
def book(engine, people):
    """Customers of li, wang, zhao and the shared pool, a branch, and their orders."""
    records = engine.records
    head = records.create(
        "Customer",
        {
            "name": "=成都酒业有限公司",  # a formula to a spreadsheet, unless guarded
            "code": "C-001",
            "level": "key",
            "phone": "+86 28 8888 6666",
            "credit_rating": 5,
            "notes": "两行\n备注",
            "owner": people["li"].id,
        },
    )
    records.create(
        "Customer",
        {"name": "成都酒业(宜宾)", "code": "C-002", "parent": head.id, "owner": people["wang"].id},
    )
    records.create(
        "Customer", {"name": "West Trading", "code": "C-003", "owner": people["zhao"].id}
    )
    records.create("Customer", {"name": "公海客户", "code": "C-004", "industry": "餐饮"})
    for code, day, amount in (
        ("C-001", "2027-03-01", "1200.50"),
        ("C-001", "2027-03-02", "99.99 EUR"),
        ("C-002", "2027-03-03", "-0"),
        ("C-004", "2027-03-04", None),
    ):
        customer = records.list("Customer", filter={"code": {"eq": code}}).records[0]
        records.create("Order", {"customer": customer.id, "ordered_on": day, "amount": amount})
    return head


def natural(engine, entity, rid):
    if rid is None:
        return None
    spec = engine.registry[entity]
    key = spec.natural_key
    return engine.records.get(entity, rid)[key] if key else rid


def snapshot(engine, entity):
    """The live records of ``entity`` as comparable values: no base fields, refs by the
    natural key of their target."""
    spec = engine.registry[entity]
    out = []
    for record in engine.records.list(entity, first=200).records:
        values = {k: v for k, v in record.items() if k not in BASE}
        for f in spec.refs():
            values[f.name] = natural(engine, f.to, values[f.name])
        out.append(values)
    return sorted(out, key=repr)


def rows_of(path: Path) -> list[list[str]]:
    return list(csv.reader(io.StringIO(path.read_text(encoding="utf-8-sig"))))


# -- the round trip -------------------------------------------------------------------------
@pytest.mark.parametrize(("suffix", "labels"), [("csv", None), ("csv", "zh"), ("xlsx", "en")])
def test_export_then_import_of_customers_and_orders_round_trips_to_identical_records(
    engine, book, tmp_path, suffix, labels
):
    before = snapshot(engine, "Customer"), snapshot(engine, "Order")
    customers, orders = tmp_path / f"customers.{suffix}", tmp_path / f"orders.{suffix}"
    assert export_file(engine, "Customer", customers, labels=labels) == 4
    assert export_file(engine, "Order", orders, labels=labels) == 4
    for order in engine.records.list("Order").records:
        engine.records.delete("Order", order.id)
    for customer in sorted(engine.records.list("Customer").records, key=lambda c: -c.id):
        engine.records.delete("Customer", customer.id)
    assert snapshot(engine, "Customer") == []
    assert import_file(engine, "Customer", customers).created == 4
    assert import_file(engine, "Order", orders).created == 4
    assert (snapshot(engine, "Customer"), snapshot(engine, "Order")) == before


def test_text_a_spreadsheet_would_run_as_a_formula_is_written_quoted(engine, book, tmp_path):
    path = tmp_path / "c.csv"
    export_file(engine, "Customer", path, fields=["code", "name", "phone"])
    assert rows_of(path)[1] == ["C-001", "'=成都酒业有限公司", "'+86 28 8888 6666"]


# -- columns --------------------------------------------------------------------------------
def test_labels_head_the_columns_and_name_the_enum_values(engine, book, tmp_path):
    path = tmp_path / "c.csv"
    export_file(engine, "Customer", path, fields=["code", "level", "owner"], labels="zh")
    assert rows_of(path)[:2] == [["编号", "客户级别", "负责人"], ["C-001", "重点客户", "li"]]


def test_money_is_written_as_an_amount_and_a_currency_column(engine, book, tmp_path):
    path = tmp_path / "o.csv"
    export_file(engine, "Order", path, fields=["customer", "amount"])
    rows = rows_of(path)
    assert rows[0] == ["customer", "amount", "amount_currency"]
    assert sorted(rows[1:]) == [
        ["C-001", "1200.50", "CNY"],
        ["C-001", "99.99", "EUR"],
        ["C-002", "0.00", "CNY"],
        ["C-004", "", ""],
    ]


def test_fields_pick_and_order_the_columns(engine, book, tmp_path):
    path = tmp_path / "c.csv"
    export_file(engine, "Customer", path, fields=["id", "code", "name"])
    assert rows_of(path)[0] == ["id", "code", "name"]
    assert rows_of(path)[1] == [str(book.id), "C-001", "'=成都酒业有限公司"]


def test_an_unknown_field_is_refused_listing_the_fields(engine, tmp_path):
    with pytest.raises(ValidationError, match=r"'wechat': no such field; the fields of Customer"):
        export_file(engine, "Customer", tmp_path / "c.csv", fields=["name", "wechat"])


def test_the_filter_picks_the_records(engine, book, tmp_path):
    path = tmp_path / "c.csv"
    count = export_file(engine, "Customer", path, filter={"level": {"eq": "key"}}, fields=["code"])
    assert count == 1 and rows_of(path) == [["code"], ["C-001"]]


def test_an_xlsx_export_keeps_numbers_and_dates_typed(engine, book, tmp_path):
    from openpyxl import load_workbook

    path = tmp_path / "o.xlsx"
    export_file(engine, "Order", path, fields=["ordered_on", "amount"])
    sheet = load_workbook(path).active
    rows = sorted(sheet.iter_rows(min_row=2, values_only=True), key=lambda r: r[0])
    assert rows[0][0].date().isoformat() == "2027-03-01"
    assert Decimal(str(rows[0][1])) == Decimal("1200.5") and rows[0][2] == "CNY"


def test_an_export_is_read_page_by_page(engine, tmp_path):
    engine.records.create_many(
        "Customer", [{"name": f"c{i}", "code": f"K{i:05d}"} for i in range(CHUNK * 2 + 5)]
    )
    export = Export.prepare(engine, "Customer", fields=["code"])
    pages = list(export.pages())
    assert [len(p) for p in pages] == [CHUNK, CHUNK, 5]
    assert pages[-1][-1] == [f"K{CHUNK * 2 + 4:05d}"]


# -- permission and audit -------------------------------------------------------------------
def exports(engine):
    return engine.records.audit_log(actions=["export", "export_refused"])


def test_a_customer_manager_may_not_export_and_the_refusal_is_audited(
    engine, book, people, tmp_path
):
    with pytest.raises(PermissionDenied, match="customer_manager may not export Customer"):
        export_file(engine, "Customer", tmp_path / "c.csv", actor=people["li"])
    assert not (tmp_path / "c.csv").exists()
    (event,) = exports(engine)
    assert (event["action"], event["entity"], event["actor"]) == (
        "export_refused",
        "Customer",
        "li",
    )


def test_every_export_is_audited_with_who_what_filter_and_count(engine, book, people, tmp_path):
    export_file(engine, "Customer", tmp_path / "a.csv")
    flt = {"industry": {"eq": "餐饮"}}
    export_file(engine, "Customer", tmp_path / "b.xlsx", actor=people["chen"], filter=flt)
    newest, oldest = exports(engine)
    assert (oldest["actor"], oldest["action"], oldest["changes"]["rows"]) == ("system", "export", 4)
    assert (newest["actor"], newest["actor_id"]) == ("chen", people["chen"].id)
    assert newest["changes"]["filter"] == flt and newest["changes"]["format"] == "xlsx"
    assert newest["changes"]["rows"] == 0  # the pool customer is not chen's team's


def test_a_supervisor_exports_the_records_of_their_team(engine, book, people, tmp_path):
    path = tmp_path / "c.csv"
    export_file(engine, "Customer", path, actor=people["chen"], fields=["code"])
    assert sorted(rows_of(path)[1:]) == [["C-001"], ["C-002"]]


def test_an_export_scope_granted_in_roles_yaml_reaches_own_records_only(
    make_engine, home, clock, tmp_path
):
    (home / "roles.yaml").write_text(
        "roles:\n  list_keeper:\n    label: List keeper\n    export: own\n", encoding="utf-8"
    )
    engine = make_engine(sales, clock=clock)
    li = engine.auth.create_user("li", roles=["customer_manager", "list_keeper"])
    actor = engine.auth.actor_for(li.id)
    engine.records.create("Customer", {"name": "Mine", "code": "M-1"}, actor=actor)
    engine.records.create("Customer", {"name": "Pool", "code": "P-1"})  # readable: the pool
    path = tmp_path / "c.csv"
    export_file(engine, "Customer", path, actor=actor, fields=["code"])
    assert rows_of(path) == [["code"], ["M-1"]]


# -- the command line -------------------------------------------------------------------------
@pytest.fixture
def guanxi(tmp_path, database_url):
    home, run = cli_in_home(tmp_path, database_url, columns=250)
    engine = Engine(Config(home=home, database_url=database_url, plugins=("sales",)))
    engine.open()
    engine.records.create("Customer", {"name": "Acme", "code": "A-1", "region": "华东"})
    engine.records.create("Customer", {"name": "Beta", "code": "B-1", "region": "华北"})
    engine.auth.create_user("li", roles=["customer_manager"])
    run.engine = engine  # type: ignore[attr-defined]
    yield run
    engine.close()


def test_the_export_command_writes_the_file_and_the_audit_command_lists_it(guanxi, tmp_path):
    path = tmp_path / "east.csv"
    result = guanxi(
        "export", "Customer", "--filter", '{"region": {"eq": "华东"}}', "--fields", "code,name",
        "-o", str(path),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "exported 1 Customer record(s)" in result.stdout
    assert rows_of(path) == [["code", "name"], ["A-1", "Acme"]]
    listed = guanxi("audit", "--action", "export").stdout
    assert "export" in listed and "Customer" in listed and "华东" in listed


def test_the_export_command_refuses_a_customer_manager(guanxi, tmp_path):
    result = guanxi("export", "Customer", "--as", "li", "-o", str(tmp_path / "c.csv"))
    assert result.exit_code == 1
    assert "customer_manager may not export Customer records" in result.output
    listed = guanxi("audit", "--action", "export_refused", "--user", "li").stdout
    assert "export_refused" in listed


def test_the_export_command_says_what_is_wrong_with_a_filter(guanxi, tmp_path):
    result = guanxi(
        "export", "Customer", "--filter", "{region: 华东}", "-o", str(tmp_path / "x.csv")
    )
    assert result.exit_code == 2
    assert "--filter" in result.output and "not JSON" in result.output


def test_the_import_command_reads_back_what_the_export_command_wrote(guanxi, tmp_path):
    path = tmp_path / "orders.xlsx"
    engine = guanxi.engine
    acme = engine.records.list("Customer", filter={"code": {"eq": "A-1"}}).records[0]
    engine.records.create(
        "Order", {"customer": acme.id, "ordered_on": "2027-03-01", "amount": "5 EUR"}
    )
    assert guanxi("export", "Order", "--labels", "zh", "-o", str(path)).exit_code == 0
    result = guanxi("import", "Order", str(path))
    assert result.exit_code == 0, result.output
    amounts = [o.amount for o in engine.records.list("Order").records]
    assert amounts == [Money(Decimal("5.00"), "EUR")] * 2
