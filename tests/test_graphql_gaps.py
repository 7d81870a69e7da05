"""The GraphQL API around its edges: sharing records, passwords, what history payloads and
labels show, how errors name fields, malformed requests, nested connections that read
only what they return, and analytics contributions that cannot be served."""

from __future__ import annotations

import types
from typing import Any

import pytest
import strawberry

from guanxi.engine import PluginError, hookimpl
from guanxi.graphql.schema import build_schema

from .graphql_client import graphql_client

PASSWORD = "plum blossom spring"
WORKFLOW = """\
workflow: booking
entity: ExpoBooking
field: stage
initial: requested
states:
  requested: {label: Requested, labels: {zh: 已申请}}
  confirmed: {label: Confirmed, labels: {zh: 已确认}, require: [booth_m2]}
  cancelled: {label: Cancelled, final: true, outcome: lost}
transitions:
  - {trigger: confirm, labels: {zh: 确认}, source: requested, dest: confirmed}
  - trigger: move
    source: requested
    dest: requested
    payload: {hall: {type: string}, note: {type: string}}
    actions: [{action: set, fields: {hall: payload.hall}}]
  - trigger: cancel
    labels: {zh: 取消}
    source: [requested, confirmed]
    dest: cancelled
    payload: {reason: {type: string, required: true}}
    actions: [{action: set, fields: {cancel_reason: payload.reason}}]
"""
ROLES = """\
roles:
  clerk:
    default: {read: all, create: all, update: all, delete: all}
    hidden_fields: {ExpoBooking: [hall, cancel_reason], Account: [revenue]}
  seller:
    default: {read: own, create: own, update: own, delete: own}
"""
FIRE = (
    'mutation($id: ID!, $t: String!, $p: JSON) { fireTransition(entity: "ExpoBooking", '
    "id: $id, trigger: $t, payload: $p) { state event { payload } } }"
)
HISTORY = "query($id: ID!) { expoBooking(id: $id) { history { trigger payload } } }"


@pytest.fixture
def engine(make_engine, home, test_plugin):
    (home / "workflows" / "booking.yaml").write_text(WORKFLOW, encoding="utf-8")
    (home / "roles.yaml").write_text(ROLES, encoding="utf-8")
    return make_engine(test_plugin("expo"), test_plugin("scoped"))


@pytest.fixture
def api(engine):
    with graphql_client(engine) as api:
        yield api


def user(engine, name: str, role: str, password: str | None = None) -> tuple[int, str]:
    """A new user's id and a token of theirs."""
    made = engine.auth.create_user(name, password=password, roles=[role])
    return made.id, engine.auth.issue_token(made.id).token


def ok(result: dict[str, Any]) -> dict[str, Any]:
    assert "errors" not in result, result
    return result["data"]


def error(result: dict[str, Any]) -> dict[str, Any]:
    """The first error of an answer that must have one."""
    assert result.get("errors"), result
    return result["errors"][0]


def make_booking(api, **fields: Any) -> str:
    fair = engine_fair(api)
    values = {"title": "Booth A", "fair": fair, **fields}
    return str(api.engine.records.create("ExpoBooking", values).id)


def engine_fair(api, name: str = "Chengdu spring") -> int:
    found = api.engine.records.list("Fair", filter={"name": {"eq": name}}, first=1).records
    return found[0].id if found else api.engine.records.create("Fair", {"name": name}).id


def make_account(api, owner: int | None = None) -> str:
    created = ok(
        api.gql(
            'mutation($o: ID) { createAccount(input: {name: "Tsingtao", ownerId: $o}) { id } }',
            {"o": str(owner) if owner else None},
        )
    )
    return created["createAccount"]["id"]


ADD_MEMBER = (
    'mutation($id: ID!, $u: ID!, $a: String!) { addMember(entity: "Account", id: $id, '
    "userId: $u, access: $a) { user { id username } access } }"
)
REMOVE_MEMBER = (
    'mutation($id: ID!, $u: ID!) { removeMember(entity: "Account", id: $id, userId: $u) }'
)


# -- members ----------------------------------------------------------------------------------
def test_add_member_shares_a_record_and_its_members_list_them(api, engine):
    mei, _ = user(engine, "mei", "seller")
    account = make_account(api)
    added = ok(api.gql(ADD_MEMBER, {"id": account, "u": str(mei), "a": "edit"}))
    assert added["addMember"] == {"user": {"id": str(mei), "username": "mei"}, "access": "edit"}
    shown = ok(
        api.gql(
            "query($id: ID!) { account(id: $id) { members { user { id username } access } } }",
            {"id": account},
        )
    )
    assert shown["account"]["members"] == [
        {"user": {"id": str(mei), "username": "mei"}, "access": "edit"}
    ]


def test_a_read_member_sees_a_record_they_do_not_own(api, engine):
    mei, token = user(engine, "mei", "seller")
    account = make_account(api)
    query = "query($id: ID!) { account(id: $id) { name } }"
    assert ok(api.gql(query, {"id": account}, token=token))["account"] is None
    ok(api.gql(ADD_MEMBER, {"id": account, "u": str(mei), "a": "read"}))
    assert ok(api.gql(query, {"id": account}, token=token))["account"] == {"name": "Tsingtao"}


def test_remove_member_stops_sharing_and_is_false_for_a_non_member(api, engine):
    mei, token = user(engine, "mei", "seller")
    account = make_account(api)
    ok(api.gql(ADD_MEMBER, {"id": account, "u": str(mei), "a": "read"}))
    assert ok(api.gql(REMOVE_MEMBER, {"id": account, "u": str(mei)}))["removeMember"] is True
    assert ok(api.gql(REMOVE_MEMBER, {"id": account, "u": str(mei)}))["removeMember"] is False
    shown = api.gql("query($id: ID!) { account(id: $id) { name } }", {"id": account}, token=token)
    assert ok(shown)["account"] is None


def test_a_read_member_may_not_share_the_record_further(api, engine):
    mei, token = user(engine, "mei", "seller")
    lin, _ = user(engine, "lin", "seller")
    account = make_account(api)
    ok(api.gql(ADD_MEMBER, {"id": account, "u": str(mei), "a": "read"}))
    refused = api.gql(ADD_MEMBER, {"id": account, "u": str(lin), "a": "read"}, token=token)
    assert error(refused)["extensions"]["code"] == "FORBIDDEN"


def test_a_bad_access_level_names_the_access_argument(api, engine):
    mei, _ = user(engine, "mei", "seller")
    account = make_account(api)
    found = error(api.gql(ADD_MEMBER, {"id": account, "u": str(mei), "a": "owner"}))
    assert found["extensions"]["code"] == "VALIDATION"
    assert found["extensions"]["field"] == "access"


def test_an_unknown_user_names_the_user_id_argument(api):
    account = make_account(api)
    found = error(api.gql(ADD_MEMBER, {"id": account, "u": "999", "a": "read"}))
    assert (found["extensions"]["code"], found["extensions"]["field"]) == ("VALIDATION", "userId")
    assert "User #999 does not exist" in found["message"]


def test_sharing_a_record_of_an_entity_without_members_is_a_validation_error(api, engine):
    mei, _ = user(engine, "mei", "seller")
    fair = engine_fair(api)
    result = api.gql(
        'mutation($id: ID!, $u: ID!) { addMember(entity: "Fair", id: $id, userId: $u) { access } }',
        {"id": str(fair), "u": str(mei)},
    )
    assert error(result)["extensions"]["code"] == "VALIDATION"


def test_only_entities_declared_with_members_have_a_members_field(api):
    query = '{ __type(name: "%s") { fields { name } } }'
    fields = {
        name: {f["name"] for f in ok(api.gql(query % name))["__type"]["fields"]}
        for name in ("Account", "Fair")
    }
    assert "members" in fields["Account"] and "members" not in fields["Fair"]


# -- passwords --------------------------------------------------------------------------------
SET_PASSWORD = (
    "mutation($u: ID!, $p: String!, $c: String) "
    "{ setPassword(userId: $u, password: $p, currentPassword: $c) }"
)
LOGIN = "mutation($n: String!, $p: String!) { login(username: $n, password: $p) { token } }"


def test_an_admin_sets_any_users_password(api, engine):
    mei, _ = user(engine, "mei", "seller")
    assert ok(api.gql(SET_PASSWORD, {"u": str(mei), "p": PASSWORD}))["setPassword"] is True
    assert ok(api.gql(LOGIN, {"n": "mei", "p": PASSWORD}, token=None))["login"]["token"]


def test_a_user_changes_their_own_password_with_the_current_one(api, engine):
    mei, token = user(engine, "mei", "seller", password=PASSWORD)
    changed = api.gql(SET_PASSWORD, {"u": str(mei), "p": "a new one", "c": PASSWORD}, token=token)
    assert ok(changed)["setPassword"] is True
    assert ok(api.gql(LOGIN, {"n": "mei", "p": "a new one"}, token=None))["login"]["token"]
    gone = api.gql("{ me { username } }", token=token)
    assert error(gone)["extensions"]["code"] == "UNAUTHENTICATED"


def test_changing_your_own_password_needs_the_current_one(api, engine):
    mei, token = user(engine, "mei", "seller", password=PASSWORD)
    for current in (None, "not my password"):
        refused = api.gql(
            SET_PASSWORD, {"u": str(mei), "p": "a new one", "c": current}, token=token
        )
        found = error(refused)["extensions"]
        assert (found["code"], found["field"]) == ("VALIDATION", "currentPassword")


def test_a_user_may_not_set_another_users_password(api, engine):
    _, token = user(engine, "mei", "seller")
    lin, _ = user(engine, "lin", "seller")
    refused = api.gql(SET_PASSWORD, {"u": str(lin), "p": PASSWORD}, token=token)
    assert error(refused)["extensions"]["code"] == "FORBIDDEN"


# -- history payloads and labels ----------------------------------------------------------------
def test_a_payload_key_naming_a_hidden_field_is_absent_from_history(api, engine):
    _, clerk = user(engine, "mei", "clerk")
    booking = make_booking(api)
    ok(api.gql(FIRE, {"id": booking, "t": "move", "p": {"hall": "H9", "note": "near"}}))
    seen = ok(api.gql(HISTORY, {"id": booking}, token=clerk))["expoBooking"]["history"]
    assert seen[-1] == {"trigger": "move", "payload": {"note": "near"}}
    admin = ok(api.gql(HISTORY, {"id": booking}))["expoBooking"]["history"]
    assert admin[-1]["payload"] == {"hall": "H9", "note": "near"}


def test_a_payload_copied_into_a_hidden_field_is_absent_from_history(api, engine):
    _, clerk = user(engine, "mei", "clerk")
    booking = make_booking(api)
    ok(api.gql(FIRE, {"id": booking, "t": "cancel", "p": {"reason": "budget"}}))
    seen = ok(api.gql(HISTORY, {"id": booking}, token=clerk))["expoBooking"]["history"]
    assert seen[-1] == {"trigger": "cancel", "payload": None}


def test_the_event_of_a_fired_transition_hides_hidden_fields_from_its_payload(api, engine):
    _, clerk = user(engine, "mei", "clerk")
    booking = make_booking(api)
    fired = api.gql(
        FIRE, {"id": booking, "t": "move", "p": {"hall": "H2", "note": "x"}}, token=clerk
    )
    assert ok(fired)["fireTransition"]["event"] == {"payload": {"note": "x"}}


def test_runtime_history_for_an_actor_filters_payloads(api, engine):
    mei, _ = user(engine, "mei", "clerk")
    booking = make_booking(api)
    ok(api.gql(FIRE, {"id": booking, "t": "move", "p": {"hall": "H9", "note": "near"}}))
    clerk = engine.auth.actor_for(mei)
    assert engine.runtime.history("ExpoBooking", int(booking), actor=clerk)[-1]["payload"] == {
        "note": "near"
    }
    assert engine.runtime.history("ExpoBooking", int(booking))[-1]["payload"] == {
        "hall": "H9",
        "note": "near",
    }


def test_available_transition_labels_follow_accept_language(api):
    booking = make_booking(api)
    query = "query($id: ID!) { expoBooking(id: $id) { availableTransitions { trigger label } } }"
    labels = {}
    for language in ("zh-CN,zh;q=0.9", "en"):
        found = ok(api.gql(query, {"id": booking}, headers={"Accept-Language": language}))
        labels[language] = {
            t["trigger"]: t["label"] for t in found["expoBooking"]["availableTransitions"]
        }
    assert labels["zh-CN,zh;q=0.9"] == {"confirm": "确认", "move": "Move", "cancel": "取消"}
    assert labels["en"] == {"confirm": "Confirm", "move": "Move", "cancel": "Cancel"}


def test_available_transition_reasons_name_fields_in_camel_case(api):
    booking = make_booking(api)
    query = "query($id: ID!) { expoBooking(id: $id) { availableTransitions { trigger reasons } } }"
    found = ok(api.gql(query, {"id": booking}))["expoBooking"]["availableTransitions"]
    assert {t["trigger"]: t["reasons"] for t in found}["confirm"] == [
        "missing required field(s) boothM2"
    ]


# -- how errors name fields -------------------------------------------------------------------
def test_a_bad_ref_names_the_input_argument(api):
    result = api.gql('mutation { createExpoBooking(input: {title: "A", fairId: "999"}) { id } }')
    found = error(result)
    assert found["extensions"]["field"] == "fairId"
    assert found["extensions"]["problems"][0]["field"] == "fairId"
    assert found["message"] == "ExpoBooking.fairId: Fair #999 does not exist"


def test_a_filter_problem_names_fields_in_camel_case(api, engine):
    _, clerk = user(engine, "mei", "clerk")
    result = api.gql(
        '{ expoBookings(filter: {cancelReason: {eq: "x"}}) { totalCount } }', token=clerk
    )
    found = error(result)
    assert found["extensions"]["field"] == "cancelReason"
    assert "'cancelReason'" in found["message"] and "boothM2" in found["message"]
    assert "booth_m2" not in found["message"] and "created_at" not in found["message"]


def test_a_nested_filter_problem_names_the_filter_key_of_the_ref(api):
    result = api.gql('{ expoBookings(filter: {fair: {season: {eq: "winter"}}}) { totalCount } }')
    assert error(result)["extensions"]["field"] == "fair.season"


def test_an_order_problem_names_fields_in_camel_case(api, engine):
    _, clerk = user(engine, "mei", "clerk")
    result = api.gql("{ expoBookings(orderBy: [{cancelReason: ASC}]) { totalCount } }", token=clerk)
    found = error(result)
    assert found["extensions"]["field"] == "cancelReason"
    assert "createdAt" in found["message"] and "created_at" not in found["message"]


def test_a_refused_transition_names_missing_fields_in_camel_case(api):
    booking = make_booking(api)
    found = error(api.gql(FIRE, {"id": booking, "t": "confirm"}))
    assert found["extensions"]["code"] == "VALIDATION"
    assert found["extensions"]["field"] == "boothM2"
    assert found["extensions"]["failures"] == ["missing required field(s) boothM2"]
    assert found["message"].endswith(": ExpoBooking.boothM2: is required to confirm")


# -- malformed requests -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        (b"{ fairs { totalCount } }", "application/json"),  # not JSON
        (b'{"variables": {}}', "application/json"),  # no query
        (b"query=%7B%20fairs%20%7D", "application/x-www-form-urlencoded"),  # not JSON at all
        (b"5", "application/json"),  # JSON, but no object
    ],
    ids=["not-json", "no-query", "form-encoded", "not-an-object"],
)
def test_a_malformed_request_is_a_json_validation_error_with_status_400(api, content, content_type):
    response = api.post(content=content, headers={"Content-Type": content_type})
    assert response.status_code == 400
    body = response.json()
    assert body["data"] is None
    (only,) = body["errors"]
    assert only["extensions"] == {"code": "VALIDATION"} and only["message"]


# -- nested connections -------------------------------------------------------------------------
class RowSpy:
    """Counts the rows each SELECT reading ``table`` hands back (a spy on Pony's one way
    of running SQL, ``Database._exec_sql``)."""

    def __init__(self, monkeypatch, engine, table: str) -> None:
        self.counts: list[int] = []
        real = engine.db._exec_sql
        spy = self

        def exec_sql(sql, arguments=None, *args, **kwargs):
            cursor = real(sql, arguments, *args, **kwargs)
            if sql.lstrip().upper().startswith("SELECT") and f'"{table}"' in sql:
                spy.counts.append(0)
                return _CountingCursor(cursor, spy, len(spy.counts) - 1)
            return cursor

        monkeypatch.setattr(engine.db, "_exec_sql", exec_sql)


class _CountingCursor:
    def __init__(self, cursor, spy: RowSpy, index: int) -> None:
        self._cursor, self._spy, self._index = cursor, spy, index

    def _count(self, rows):
        self._spy.counts[self._index] += len(rows)
        return rows

    def fetchall(self):
        return self._count(self._cursor.fetchall())

    def fetchmany(self, *args):
        return self._count(self._cursor.fetchmany(*args))

    def fetchone(self):
        row = self._cursor.fetchone()
        self._count([row] if row is not None else [])
        return row

    def __getattr__(self, name):
        return getattr(self._cursor, name)


def test_a_nested_connection_reads_at_most_first_rows_of_a_parents_children(
    api, engine, monkeypatch
):
    fair = engine_fair(api)
    rows = [{"title": f"b{i:03}", "fair": fair} for i in range(300)]
    engine.records.create_many("ExpoBooking", rows)
    spy = RowSpy(monkeypatch, engine, "expo_booking")
    result = api.gql(
        "query($id: ID!) { fair(id: $id) { expoBookings(first: 5, orderBy: [{title: DESC}]) "
        "{ totalCount pageInfo { hasNextPage } nodes { title } } } }",
        {"id": str(fair)},
    )
    conn = ok(result)["fair"]["expoBookings"]
    assert conn["totalCount"] == 300 and conn["pageInfo"]["hasNextPage"]
    assert [n["title"] for n in conn["nodes"]] == ["b299", "b298", "b297", "b296", "b295"]
    assert spy.counts and max(spy.counts) <= 5, spy.counts


def test_nested_connections_rank_filter_and_count_within_each_parent(api, engine):
    chengdu, xian = engine_fair(api, "Chengdu"), engine_fair(api, "Xian")
    for fair, titles in ((chengdu, "acegi"), (xian, "bdf")):
        engine.records.create_many(
            "ExpoBooking", [{"title": t, "fair": fair, "hall": "H1"} for t in titles]
        )
    engine.records.create("ExpoBooking", {"title": "z", "fair": xian, "hall": "H2"})
    result = ok(
        api.gql(
            "{ fairs(orderBy: [{name: ASC}]) { nodes { name "
            'expoBookings(first: 2, orderBy: [{title: DESC}], filter: {hall: {eq: "H1"}}) '
            "{ totalCount nodes { title } } none: expoBookings(first: 0) { totalCount nodes "
            "{ title } } } } }"
        )
    )
    shown = {
        n["name"]: (
            n["expoBookings"]["totalCount"],
            [b["title"] for b in n["expoBookings"]["nodes"]],
        )
        for n in result["fairs"]["nodes"]
    }
    assert shown == {"Chengdu": (5, ["i", "g"]), "Xian": (3, ["f", "d"])}
    assert [n["none"] for n in result["fairs"]["nodes"]] == [
        {"totalCount": 5, "nodes": []},
        {"totalCount": 4, "nodes": []},
    ]


def test_a_nested_connection_hides_fields_hidden_from_the_caller(api, engine):
    _, clerk = user(engine, "mei", "clerk")
    make_booking(api, hall="H1")
    result = api.gql("{ fairs { nodes { expoBookings { nodes { title hall } } } } }", token=clerk)
    assert ok(result)["fairs"]["nodes"][0]["expoBookings"]["nodes"] == [
        {"title": "Booth A", "hall": None}
    ]


def test_a_ref_hides_fields_hidden_from_the_caller(api, engine):
    _, clerk = user(engine, "mei", "clerk")
    account = engine.records.create("Account", {"name": "Tsingtao", "revenue": "10"})
    engine.records.create("AccountNote", {"account": account.id, "text": "call back"})
    result = api.gql("{ accountNotes { nodes { account { name revenue } } } }", token=clerk)
    assert ok(result)["accountNotes"]["nodes"] == [
        {"account": {"name": "Tsingtao", "revenue": None}}
    ]


# -- analytics contributions --------------------------------------------------------------------
@strawberry.type
class Figures:
    answer: int = 42


def analytics_plugin(value: Any) -> types.ModuleType:
    module = types.ModuleType("guanxi_test_figures")
    module.name = "figures"

    @hookimpl
    def register_analytics(register):
        register("figures", value)

    module.register_analytics = register_analytics
    return module


def test_an_analytics_instance_is_a_plugin_error_naming_the_plugin(make_engine, test_plugin):
    engine = make_engine(test_plugin("expo"), analytics_plugin(Figures()))
    with pytest.raises(PluginError, match=r"plugin figures.*register\('figures', Figures\)"):
        build_schema(engine)


def test_an_analytics_class_is_served(make_engine, test_plugin):
    engine = make_engine(test_plugin("expo"), analytics_plugin(Figures))
    with graphql_client(engine) as api:
        assert ok(api.gql("{ analytics { figures { answer } } }")) == {
            "analytics": {"figures": {"answer": 42}}
        }
