"""``importRecords`` (a GraphQL multipart upload) and ``exportRecords`` (a short-lived
signed download link served at /exports/<token>) through the app ``guanxi serve`` runs."""

from __future__ import annotations

import base64
import csv
import io
import json
from datetime import timedelta

import pytest

from guanxi.graphql.limits import Limits
from guanxi.plugins import sales

from .graphql_client import ADMIN_TOKEN, code, graphql_client

IMPORT = """
mutation Import($entity: String!, $file: Upload!, $dryRun: Boolean, $skipErrors: Boolean,
                $onDuplicate: OnDuplicate) {
  importRecords(entity: $entity, file: $file, dryRun: $dryRun, skipErrors: $skipErrors,
                onDuplicate: $onDuplicate) {
    entity rows created updated skipped failed written dryRun
    problems { row column value message skipped }
  }
}
"""
EXPORT = """
mutation Export($entity: String!, $filter: JSON, $format: ExportFormat, $fields: [String!],
                $labels: String) {
  exportRecords(entity: $entity, filter: $filter, format: $format, fields: $fields,
                labels: $labels) { url expiresAt format rows }
}
"""
CUSTOMERS = "名称,编号,信用等级\r\n成都酒业,C-001,5\r\n宜宾酒业,C-002,很好\r\n泸州酒业,C-003,3\r\n"


@pytest.fixture
def engine(make_engine, clock):
    return make_engine(sales, clock=clock)


@pytest.fixture
def api(engine):
    with graphql_client(engine) as client:
        yield client


def upload(
    api, entity: str, content: bytes, name: str = "customers.csv", token=ADMIN_TOKEN, **variables
):
    """POST an importRecords operation as a GraphQL multipart request."""
    operations = {"query": IMPORT, "variables": {"entity": entity, "file": None, **variables}}
    response = api.client.post(
        "/graphql",
        headers=api.headers(token),
        data={"operations": json.dumps(operations), "map": json.dumps({"0": ["variables.file"]})},
        files={"0": (name, content, "text/csv")},
    )
    return response


def imported(api, *args, **kwargs):
    answer = upload(api, *args, **kwargs).json()
    assert "errors" not in answer, answer
    return answer["data"]["importRecords"]


def customer_codes(engine):
    return sorted(c.code for c in engine.records.list("Customer").records)


def manager(engine, name="li", role="customer_manager"):
    user = engine.auth.create_user(name, roles=[role])
    return user.id, engine.auth.issue_token(user.id).token


# -- importRecords ---------------------------------------------------------------------------
def test_an_upload_with_a_bad_row_writes_nothing_and_answers_the_row_problem(api, engine):
    result = imported(api, "Customer", CUSTOMERS.encode("gbk"))
    assert result["problems"] == [
        {"row": 3, "column": "信用等级", "value": "很好", "message": "must be a whole number",
         "skipped": False}
    ]  # fmt: skip
    assert (result["rows"], result["created"], result["failed"], result["written"]) == (
        3,
        2,
        1,
        False,
    )
    assert customer_codes(engine) == []


def test_skip_errors_writes_the_good_rows_of_an_upload(api, engine):
    result = imported(api, "Customer", CUSTOMERS.encode("utf-8"), skipErrors=True)
    assert (result["created"], result["written"]) == (2, True)
    assert customer_codes(engine) == ["C-001", "C-003"]


def test_a_dry_run_upload_writes_nothing(api, engine):
    good = CUSTOMERS.replace("很好", "4").encode("utf-8")
    result = imported(api, "Customer", good, dryRun=True)
    assert (result["created"], result["written"], result["dryRun"]) == (3, False, True)
    assert customer_codes(engine) == []


def test_on_duplicate_skip_lists_the_duplicates_it_left_out(api, engine):
    engine.records.create("Customer", {"name": "成都酒业有限公司", "code": "X-1"})
    good = CUSTOMERS.replace("很好", "4").encode("utf-8")
    result = imported(api, "Customer", good, onDuplicate="SKIP")
    assert (result["created"], result["skipped"]) == (2, 1)
    assert [(p["row"], p["skipped"]) for p in result["problems"]] == [(2, True)]


def test_an_xlsx_upload_is_read_by_its_file_name(api, engine, tmp_path):
    from openpyxl import Workbook

    book = Workbook()
    book.active.append(["name", "code"])
    book.active.append(["Acme", "A-1"])
    book.save(tmp_path / "c.xlsx")
    result = imported(api, "Customer", (tmp_path / "c.xlsx").read_bytes(), name="c.xlsx")
    assert result["created"] == 1 and customer_codes(engine) == ["A-1"]


def test_an_upload_is_imported_as_the_caller(api, engine):
    uid, token = manager(engine)
    imported(api, "Customer", b"name,code\r\nMine,M-1\r\n", token=token)
    assert [c.owner for c in engine.records.list("Customer").records] == [uid]


def test_an_unknown_entity_or_column_is_a_validation_error(api):
    answer = upload(api, "Kunde", b"name\r\nx\r\n").json()
    assert code(answer) == "VALIDATION" and "known:" in answer["errors"][0]["message"]
    answer = upload(api, "Customer", b"name,wechat\r\nx,y\r\n").json()
    assert code(answer) == "VALIDATION"
    assert "column B 'wechat' is not a field of Customer" in answer["errors"][0]["message"]


def test_an_upload_needs_a_token(api):
    assert code(upload(api, "Customer", b"name\r\nx\r\n", token=None).json()) == "UNAUTHENTICATED"


def test_an_upload_larger_than_the_body_limit_is_refused(engine):
    with graphql_client(engine, Limits(max_body_bytes=2000)) as small:
        response = upload(small, "Customer", b"name\r\n" + b"x" * 4000 + b"\r\n")
    assert response.status_code == 413
    assert code(response.json()) == "LIMIT_EXCEEDED"
    assert customer_codes(engine) == []


# -- exportRecords ---------------------------------------------------------------------------
@pytest.fixture
def book(engine):
    engine.records.create("Customer", {"name": "Acme", "code": "A-1", "credit_rating": 5})
    engine.records.create("Customer", {"name": "Beta", "code": "B-1", "credit_rating": 2})


def link(api, token=ADMIN_TOKEN, **variables):
    answer = api.gql(EXPORT, {"entity": "Customer", **variables}, token=token)
    assert "errors" not in answer, answer
    return answer["data"]["exportRecords"]


def download(api, url):
    return api.client.get(url.replace("http://testserver", ""))


def test_export_records_answers_a_link_that_downloads_the_csv(api, book):
    found = link(api, filter={"creditRating": {"gte": 4}}, fields=["code", "name"])
    assert found["rows"] == 1 and found["format"] == "CSV"
    response = download(api, found["url"])
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    text = response.content.decode("utf-8-sig")
    assert list(csv.reader(io.StringIO(text))) == [["code", "name"], ["A-1", "Acme"]]


def test_an_xlsx_link_downloads_a_workbook(api, book):
    from openpyxl import load_workbook

    found = link(api, format="XLSX", fields=["code"], labels="zh")
    workbook = load_workbook(io.BytesIO(download(api, found["url"]).content))
    assert list(workbook.active.iter_rows(values_only=True)) == [("编号",), ("A-1",), ("B-1",)]


def test_a_download_is_audited_when_the_link_is_fetched(api, engine, book):
    found = link(api)
    assert engine.records.audit_log(actions=["export"]) == []
    download(api, found["url"])
    (event,) = engine.records.audit_log(actions=["export"])
    assert (event["actor"], event["entity"], event["changes"]["rows"]) == ("root", "Customer", 2)


def test_a_tampered_link_is_refused(api, book):
    url = link(api, filter={"code": {"eq": "A-1"}})["url"]
    head, mac = url.rsplit("/", 1)[1].split(".")
    payload = json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
    payload["filter"] = None  # every record, not only the ones asked for
    forged = base64.urlsafe_b64encode(json.dumps(payload).encode()).decode()
    response = download(api, f"/exports/{forged.rstrip('=')}.{mac}")
    assert response.status_code == 403
    assert response.json()["errors"][0]["extensions"]["code"] == "FORBIDDEN"


def test_a_link_expires_after_ten_minutes(api, book, clock):
    url = link(api)["url"]
    clock.advance(minutes=10, seconds=1)
    response = download(api, url)
    assert response.status_code == 403
    assert "expired" in response.json()["errors"][0]["message"]


def test_a_customer_manager_is_refused_and_the_refusal_is_audited(api, engine, book):
    uid, token = manager(engine)
    answer = api.gql(EXPORT, {"entity": "Customer"}, token=token)
    assert code(answer) == "FORBIDDEN"
    (event,) = engine.records.audit_log(actions=["export_refused"])
    assert (event["actor_id"], event["entity"]) == (uid, "Customer")


def test_a_link_is_refused_once_its_user_lost_the_export_permission(api, engine, book):
    uid, token = manager(engine, "chen", role="sales_supervisor")
    url = link(api, token=token)["url"]
    engine.records.update("User", uid, {"roles": ["customer_manager"]})
    response = download(api, url)
    assert response.status_code == 403
    assert [e["actor"] for e in engine.records.audit_log(actions=["export_refused"])] == ["chen"]


def test_export_records_checks_fields_and_filter_at_once(api, book):
    answer = api.gql(EXPORT, {"entity": "Customer", "fields": ["wechat"]})
    assert code(answer) == "VALIDATION"
    answer = api.gql(EXPORT, {"entity": "Customer", "filter": {"creditRating": {"like": 1}}})
    assert code(answer) == "VALIDATION"


def test_the_link_expires_at_the_time_it_says(api, book, engine):
    found = link(api)
    expires = found["expiresAt"]
    assert expires.startswith((engine.now() + timedelta(minutes=10)).strftime("%Y-%m-%dT%H:%M"))
