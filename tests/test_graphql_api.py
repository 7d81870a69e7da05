"""The GraphQL API contract: CRUD from metadata, filters, paging, workflows, errors."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from guanxi.graphql.app import build_app
from guanxi.graphql.limits import Limits

from .test_workflow_runtime import WORKFLOW


@pytest.fixture
def engine(make_engine, home, test_plugin):
    (home / "workflows" / "booking.yaml").write_text(WORKFLOW, encoding="utf-8")
    return make_engine(test_plugin("expo"), test_plugin("booking_flow"))


@pytest.fixture
def client(engine):
    with TestClient(build_app(engine, Limits())) as client:
        yield client


@pytest.fixture
def admin_token(engine):
    user = engine.auth.create_user("root", password="correct horse", roles=["admin"])
    return engine.auth.issue_token(user.id).token


@pytest.fixture
def gql(client, admin_token):
    def gql(query, variables=None, token=admin_token, headers=None):
        response = client.post(
            "/graphql",
            json={"query": query, "variables": variables or {}},
            headers={**({"Authorization": f"Bearer {token}"} if token else {}), **(headers or {})},
        )
        return response.json()

    return gql


def code(result):
    return result["errors"][0]["extensions"]["code"]


def make_fair(gql, name="Chengdu spring"):
    result = gql("mutation($n: String!) { createFair(input: {name: $n}) { id } }", {"n": name})
    return result["data"]["createFair"]["id"]


def make_booking(gql, fair_id, title="Booth A", **extra):
    extra = {"boothM2": '"5"', **extra}
    fields = ", ".join(f"{k}: {v}" for k, v in extra.items())
    result = gql(
        f"mutation($f: ID!, $t: String!) {{ createExpoBooking(input: {{title: $t, fairId: $f"
        f"{', ' + fields if fields else ''}}}) {{ id version stage }} }}",
        {"f": fair_id, "t": title},
    )
    assert "errors" not in result, result
    return result["data"]["createExpoBooking"]


def test_every_operation_but_login_needs_a_token(gql):
    assert code(gql("{ fairs { totalCount } }", token=None)) == "UNAUTHENTICATED"
    assert code(gql("{ __schema { queryType { name } } }", token=None)) == "UNAUTHENTICATED"


def test_a_bad_token_is_unauthenticated(gql):
    assert code(gql("{ me { username } }", token="not-a-token")) == "UNAUTHENTICATED"


def test_login_gives_a_token_that_works_and_logout_ends_it(gql, admin_token):
    result = gql(
        'mutation { login(username: "root", password: "correct horse") '
        "{ token user { username } } }",
        token=None,
    )
    token = result["data"]["login"]["token"]
    assert result["data"]["login"]["user"]["username"] == "root"
    assert gql("{ me { username } }", token=token)["data"]["me"]["username"] == "root"
    assert gql("mutation { logout }", token=token)["data"]["logout"] is True
    assert code(gql("{ me { username } }", token=token)) == "UNAUTHENTICATED"


def test_a_wrong_password_is_unauthenticated(gql):
    result = gql(
        'mutation { login(username: "root", password: "nope nope") { token } }', token=None
    )
    assert code(result) == "UNAUTHENTICATED"


def test_create_returns_the_record_with_camel_case_fields_and_refs(gql):
    fair = make_fair(gql)
    result = gql(
        'mutation($f: ID!) { createExpoBooking(input: {title: "A", fairId: $f, boothM2: "12.50",'
        ' fee: {amount: "3000", currency: "EUR"}}) { id title boothM2 fee { amount currency }'
        " fairId fair { name } owner { username } createdAt version } }",
        {"f": fair},
    )
    booking = result["data"]["createExpoBooking"]
    assert booking["boothM2"] == "12.50" and booking["fee"] == {
        "amount": "3000.00",
        "currency": "EUR",
    }
    assert booking["fairId"] == fair and booking["fair"] == {"name": "Chengdu spring"}
    assert booking["owner"] == {"username": "root"} and booking["version"] == 1


def test_money_without_currency_takes_the_installation_currency(gql):
    fair = make_fair(gql)
    result = gql(
        'mutation($f: ID!) { createExpoBooking(input: {title: "A", fairId: $f, '
        'fee: {amount: "5"}}) { fee { currency } } }',
        {"f": fair},
    )
    assert result["data"]["createExpoBooking"]["fee"]["currency"] == "CNY"


def test_a_validation_error_names_the_field_in_camel_case(gql):
    fair = make_fair(gql)
    result = gql(
        'mutation($f: ID!) { createExpoBooking(input: {title: "A", fairId: $f, '
        'contactEmail: "nope"}) { id } }',
        {"f": fair},
    )
    assert code(result) == "VALIDATION"
    assert result["errors"][0]["extensions"]["field"] == "contactEmail"


def test_get_by_id_is_null_when_missing(gql):
    assert gql('{ fair(id: "999") { id } }')["data"]["fair"] is None


def test_list_filters_through_refs_orders_and_pages(gql):
    chengdu, xian = make_fair(gql, "Chengdu"), make_fair(gql, "Xian")
    for i in range(3):
        make_booking(gql, chengdu, f"C{i}")
    make_booking(gql, xian, "X0")
    query = """query($after: String) {
      expoBookings(filter: {fair: {name: {eq: "Chengdu"}}}, orderBy: [{title: DESC}],
                   first: 2, after: $after) {
        totalCount pageInfo { hasNextPage endCursor } edges { cursor node { title } }
      } }"""
    first = gql(query)["data"]["expoBookings"]
    assert first["totalCount"] == 3 and first["pageInfo"]["hasNextPage"]
    assert [e["node"]["title"] for e in first["edges"]] == ["C2", "C1"]
    rest = gql(query, {"after": first["pageInfo"]["endCursor"]})["data"]["expoBookings"]
    assert [e["node"]["title"] for e in rest["edges"]] == ["C0"]
    assert not rest["pageInfo"]["hasNextPage"]


def test_and_or_not_combine_filters(gql):
    fair = make_fair(gql)
    for title in ("alpha", "beta", "gamma"):
        make_booking(gql, fair, title)
    result = gql(
        '{ expoBookings(filter: {or: [{title: {eq: "alpha"}}, {title: {startsWith: '
        '"g"}}], not: {title: {eq: "gamma"}}}) { nodes { title } } }'
    )
    assert [n["title"] for n in result["data"]["expoBookings"]["nodes"]] == ["alpha"]


def test_a_reverse_relation_is_a_connection(gql):
    fair = make_fair(gql)
    for i in range(3):
        make_booking(gql, fair, f"B{i}")
    result = gql(
        "{ fairs { nodes { expoBookings(first: 2, orderBy: [{title: ASC}]) "
        "{ totalCount nodes { title } } } } }"
    )
    conn = result["data"]["fairs"]["nodes"][0]["expoBookings"]
    assert conn["totalCount"] == 3 and [n["title"] for n in conn["nodes"]] == ["B0", "B1"]


def test_update_patches_and_a_stale_version_is_a_conflict(gql):
    booking = make_booking(gql, make_fair(gql))
    update = (
        'mutation($id: ID!, $v: Int) { updateExpoBooking(id: $id, input: {hall: "H1"}, '
        "version: $v) { hall title version } }"
    )
    done = gql(update, {"id": booking["id"], "v": booking["version"]})["data"]
    assert done["updateExpoBooking"] == {"hall": "H1", "title": "Booth A", "version": 2}
    assert code(gql(update, {"id": booking["id"], "v": 1})) == "CONFLICT"


def test_update_of_a_missing_record_is_not_found(gql):
    result = gql('mutation { updateFair(id: "999", input: {city: "x"}) { id } }')
    assert code(result) == "NOT_FOUND"


def test_delete_is_soft_and_restore_brings_it_back(gql):
    fair = make_fair(gql)
    assert gql("mutation($id: ID!) { deleteFair(id: $id) }", {"id": fair})["data"]["deleteFair"]
    assert gql("{ fairs { totalCount } }")["data"]["fairs"]["totalCount"] == 0
    binned = gql("{ fairs(filter: {deleted: true}) { nodes { id } } }")["data"]["fairs"]
    assert binned["nodes"] == [{"id": fair}]
    restored = gql("mutation($id: ID!) { restoreFair(id: $id) { id deletedAt } }", {"id": fair})
    assert restored["data"]["restoreFair"]["deletedAt"] is None


def test_an_idempotency_key_creates_once(gql):
    create = 'mutation { createFair(input: {name: "once"}, idempotencyKey: "k-1") { id } }'
    first, again = gql(create), gql(create)
    assert first["data"]["createFair"]["id"] == again["data"]["createFair"]["id"]
    assert gql("{ fairs { totalCount } }")["data"]["fairs"]["totalCount"] == 1


def test_parts_are_nested_in_the_parent_input(gql):
    result = gql(
        'mutation { createQuote(input: {title: "Q", lines: [{product: "ad", '
        'quantity: 2, unitPrice: "10.5"}]}) { total lines { totalCount } } }'
    )
    created = result["data"]["createQuote"]
    assert float(created["total"]) == 21.0 and created["lines"] == {"totalCount": 1}


def test_fire_transition_moves_the_record_and_shows_history(gql):
    booking = make_booking(gql, make_fair(gql))
    result = gql(
        'mutation($id: ID!) { fireTransition(entity: "ExpoBooking", id: $id, '
        'trigger: "confirm") { state previousState event { trigger actor { username } } '
        "} }",
        {"id": booking["id"]},
    )
    fired = result["data"]["fireTransition"]
    assert (fired["previousState"], fired["state"]) == ("requested", "confirmed")
    assert fired["event"] == {"trigger": "confirm", "actor": {"username": "root"}}
    shown = gql(
        "query($id: ID!) { expoBooking(id: $id) { stage history { trigger toState } "
        "availableTransitions { trigger allowed } } }",
        {"id": booking["id"]},
    )
    record = shown["data"]["expoBooking"]
    assert record["stage"] == "confirmed"
    assert [h["toState"] for h in record["history"]] == ["requested", "confirmed"]
    assert {t["trigger"] for t in record["availableTransitions"]} == {"invoice", "cancel"}


def test_a_transition_missing_its_payload_is_a_validation_error_with_the_reasons(gql):
    booking = make_booking(gql, make_fair(gql))
    result = gql(
        'mutation($id: ID!) { fireTransition(entity: "ExpoBooking", id: $id, '
        'trigger: "cancel") { state } }',
        {"id": booking["id"]},
    )
    assert code(result) == "VALIDATION"
    assert result["errors"][0]["extensions"]["field"] == "reason"
    assert result["errors"][0]["extensions"]["failures"] == ["payload.reason is required"]


def test_the_state_field_is_not_in_inputs(gql):
    result = gql(
        'mutation { createExpoBooking(input: {title: "x", fairId: "1", stage: "paid"}) { id } }'
    )
    assert code(result) == "VALIDATION"


def test_metadata_describes_entities_workflows_and_roles_in_the_callers_language(gql):
    query = (
        "{ metadata { entities { name label fields { name type required } } "
        "workflows { name entity field initial states { name final outcome } mermaid } "
        "roles { name label } } }"
    )
    zh = gql(query, headers={"Accept-Language": "zh-CN,zh;q=0.9"})["data"]["metadata"]
    fair = next(e for e in zh["entities"] if e["name"] == "Fair")
    assert fair["label"] == "糖酒会"
    booking_wf = next(w for w in zh["workflows"] if w["name"] == "booking")
    assert booking_wf["field"] == "stage" and booking_wf["mermaid"].startswith("stateDiagram")
    assert {"name": "paid", "final": True, "outcome": "won"} in booking_wf["states"]
    user = next(e for e in zh["entities"] if e["name"] == "User")
    assert "passwordHash" not in {f["name"] for f in user["fields"]}


def test_notify_reaches_the_inbox(gql, engine):
    from guanxi.engine.worker import deliver_outbox

    booking = make_booking(gql, make_fair(gql), confirmed="true")
    fire = (
        'mutation($id: ID!, $t: String!) { fireTransition(entity: "ExpoBooking", id: $id, '
        "trigger: $t) { state } }"
    )
    for trigger in ("confirm", "invoice", "pay"):
        assert "errors" not in gql(fire, {"id": booking["id"], "t": trigger})
    deliver_outbox(engine)
    assert gql("{ unreadCount }")["data"]["unreadCount"] == 1
    notes = gql("{ notifications(unread: true) { totalCount nodes { id template } } }")
    note = notes["data"]["notifications"]["nodes"][0]
    assert note["template"] == "booking_paid"
    marked = gql(
        "mutation($ids: [ID!]!) { markNotificationsRead(ids: $ids) }", {"ids": [note["id"]]}
    )
    assert marked["data"]["markNotificationsRead"] == 1
    assert gql("{ unreadCount }")["data"]["unreadCount"] == 0


def test_healthz_and_readyz(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"status": "ready"}


def test_an_idempotency_key_with_a_nul_character_is_a_validation_error(gql):
    result = gql(
        'mutation($k: String) { createFair(input: {name: "x"}, idempotencyKey: $k) { id } }',
        {"k": "a\u0000b"},
    )
    assert code(result) == "VALIDATION"
