"""Issue 4's "Done when", end to end over real HTTP.

A fresh ``GUANXI_HOME`` holds an admin-defined entity (``entities/fairs.yaml``, the example
of docs/entities.md), a workflow on it (``workflows/expo_booking.yaml``, the example of
docs/workflows.md without plugin conditions) and the roles it names (``roles.yaml``). The
console script does everything an admin would: ``guanxi init``, ``guanxi user add``,
``guanxi token`` and ``guanxi serve``; then users of two teams work the records over HTTP
with their tokens: create, list with filters and paging, move them through the workflow
(refused with the wrong role or team), read the history, get notified; the other team sees
nothing of it. Runs on SQLite and, with GUANXI_TEST_POSTGRES_URL, on PostgreSQL.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

GUANXI = str(Path(sys.executable).with_name("guanxi"))

ENTITIES = """\
entities:
  - name: Fair
    label: Trade fair
    labels: {zh: 糖酒会}
    natural_key: name
    fields:
      name: {type: string, required: true, unique: true, max_length: 120, labels: {zh: 名称}}
      season:
        type: enum
        choices:
          - spring
          - {value: autumn, label: Autumn, labels: {zh: 秋季}}
      opens_on: date

  - name: ExpoBooking
    label: Expo booking
    labels: {zh: 展位预订}
    owned: true
    duplicate_keys: [booth]
    fields:
      title: {type: string, required: true, max_length: 200}
      fair: {type: ref, to: Fair, required: true, reverse: bookings}
      booth: {type: string, max_length: 20, indexed: true}
      area_m2: {type: decimal, precision: 8, scale: 2, min: 0}
      fee: money
      confirmed: {type: bool, default: false}
      cancel_reason: {type: string, max_length: 200}
      notes: text

extend:
  Fair:
    city: {type: string, max_length: 64, labels: {zh: 城市}}
"""
WORKFLOW = """\
workflow: expo_booking
label: Expo booking
labels: {zh: 展位预订流程}
entity: ExpoBooking
field: status
initial: requested
states:
  requested: {label: Requested, labels: {zh: 已申请}}
  confirmed: {label: Confirmed, require: [area_m2], probability: 0.6}
  waiting:   {label: Waiting for payment, timeout: {after: 7d, trigger: expire}}
  paid:      {label: Paid, final: true, outcome: won, on_enter: [{action: notify, to: owner, template: booking_paid}]}
  cancelled: {label: Cancelled, final: true, outcome: lost}
transitions:
  - {trigger: confirm, source: requested, dest: confirmed, roles: [fair_manager]}
  - {trigger: invoice, source: confirmed, dest: waiting, roles: [fair_office, fair_manager]}
  - {trigger: pay, source: waiting, dest: paid, roles: [fair_manager]}
  - trigger: cancel
    source: [requested, confirmed, waiting]
    dest: cancelled
    payload: {reason: {type: string, required: true}}
    actions: [{action: set, fields: {cancel_reason: payload.reason}}]
  - {trigger: expire, source: waiting, dest: cancelled}
"""  # noqa: E501
ROLES = """\
roles:
  fair_office:
    label: Fair office
    labels: {zh: 展会办公室}
    default: {read: team, create: team, update: team, delete: none}
    entities:
      Fair: {read: all, create: all, update: all}
  fair_manager:
    label: Fair manager
    default: {read: team, create: team, update: team, delete: team}
    entities:
      Fair: {read: all, create: all, update: all}
"""
#: user -> (role, team). "Chengdu desk" is a sub-team of "Fair office".
USERS = {
    "alice": ("fair_office", "Fair office"),
    "carol": ("fair_manager", "Fair office"),
    "dave": ("fair_office", "Chengdu desk"),
    "eve": ("fair_manager", "News desk"),
}
BOOKING = "id title booth areaM2 status version owner { username }"
FIRE = (
    "mutation($id: ID!, $trigger: String!, $payload: JSON, $version: Int) {"
    ' fireTransition(entity: "ExpoBooking", id: $id, trigger: $trigger, payload: $payload,'
    " version: $version) { state previousState event { trigger actor { username } } } }"
)
HISTORY = (
    "query($id: ID!) { expoBooking(id: $id) { status cancelReason"
    " history { trigger fromState toState actor { username } payload }"
    " availableTransitions { trigger allowed reasons } } }"
)


def command(home: Path, env: dict[str, str]) -> Callable[..., str]:
    """``guanxi(*args)``: runs the installed ``guanxi`` command in ``home`` with ``env``
    and returns its output; a failure shows the command and what it printed."""

    def guanxi(*args: str) -> str:
        result = subprocess.run(
            [GUANXI, *args], cwd=home, env=env, capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, f"guanxi {' '.join(args)}:\n{result.stdout}{result.stderr}"
        return result.stdout

    return guanxi


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Api:
    """GraphQL over HTTP with one user's token."""

    def __init__(self, http: httpx.Client, token: str) -> None:
        self.http = http
        self.token = token

    def raw(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        response = self.http.post(
            "/graphql",
            json={"query": query, "variables": variables or {}},
            headers={"Authorization": f"Bearer {self.token}"},
        )
        assert response.headers["content-type"].startswith("application/json"), response.text
        return response.json()

    def __call__(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        result = self.raw(query, variables)
        assert "errors" not in result, result
        return result["data"]

    def refused(self, query: str, variables: dict[str, Any] | None = None) -> tuple[str, str]:
        """(code, message) of an answer that must be an error."""
        result = self.raw(query, variables)
        assert result.get("errors"), result
        error = result["errors"][0]
        return error["extensions"]["code"], error["message"]


def test_an_admin_defined_entity_and_workflow_over_http(tmp_path, database_url):
    home = tmp_path / "home"
    for folder in ("entities", "workflows"):
        (home / folder).mkdir(parents=True)
    (home / "entities" / "fairs.yaml").write_text(ENTITIES, encoding="utf-8")
    (home / "workflows" / "expo_booking.yaml").write_text(WORKFLOW, encoding="utf-8")
    (home / "roles.yaml").write_text(ROLES, encoding="utf-8")
    env = {
        **os.environ,
        "GUANXI_HOME": str(home),
        "GUANXI_DATABASE_URL": database_url,
        "GUANXI_PLUGINS": "",
        "COLUMNS": "200",
    }

    guanxi = command(home, env)

    def token(name: str) -> str:
        return guanxi("token", name, "--days", "1").strip().splitlines()[-1]

    guanxi("init")
    guanxi("user", "add", "root", "--role", "admin")
    admin_token = token("root")

    with serving(home, env, tmp_path / "serve.log") as http:
        assert http.get("/readyz").json() == {"status": "ready"}
        work_the_bookings(http, admin_token, guanxi, token)


@contextmanager
def serving(home: Path, env: dict[str, str], log_path: Path) -> Iterator[httpx.Client]:
    """``guanxi serve --worker`` on a free port of 127.0.0.1, healthy; its log is printed
    when the block fails, and the server stopped after it."""
    port = free_port()
    with log_path.open("w") as log:
        server = subprocess.Popen(
            [GUANXI, "serve", "--port", str(port), "--worker"],
            cwd=home,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            wait_until_healthy(http, server, log_path)
            yield http
    except BaseException:
        print(log_path.read_text(errors="replace")[-5000:], file=sys.stderr)
        raise
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=5)


def wait_until_healthy(http: httpx.Client, server: subprocess.Popen, log_path: Path) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"guanxi serve exited:\n{log_path.read_text()}")
        try:
            if http.get("/healthz").json() == {"status": "ok"}:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"guanxi serve did not answer /healthz:\n{log_path.read_text()}")


def work_the_bookings(http: httpx.Client, admin_token: str, guanxi: Any, token: Any) -> None:
    admin = Api(http, admin_token)
    assert code_of(Api(http, "not a token").raw("{ expoBookings { totalCount } }")) == (
        "UNAUTHENTICATED"
    )

    # -- teams (through the API, as the admin), users and their tokens (the CLI) ------------
    office = admin('mutation { createTeam(input: {name: "Fair office"}) { id } }')
    office_id = office["createTeam"]["id"]
    admin(
        'mutation($p: ID!) { createTeam(input: {name: "Chengdu desk", parentId: $p}) { id } }',
        {"p": office_id},
    )
    admin('mutation { createTeam(input: {name: "News desk"}) { id } }')
    for name, (role, team) in USERS.items():
        assert f"added user {name}" in guanxi("user", "add", name, "--role", role, "--team", team)
    listing = guanxi("user", "list")
    assert "Chengdu desk" in listing and "fair_manager" in listing
    alice, carol, dave, eve = (Api(http, token(name)) for name in USERS)
    assert alice("{ me { username roles team { name } } }")["me"] == {
        "username": "alice",
        "roles": ["fair_office"],
        "team": {"name": "Fair office"},
    }

    # -- the metadata describes the admin's entity and workflow -------------------------------
    meta = alice(
        "{ metadata { entities { name plural fields { name } } workflows { name entity field"
        " initial states { name } transitions { trigger roles } } roles { name label } } }"
    )["metadata"]
    booking_meta = next(e for e in meta["entities"] if e["name"] == "ExpoBooking")
    assert booking_meta["plural"] == "expoBookings"
    assert {"title", "areaM2", "fee", "status", "fair"} <= {
        f["name"] for f in booking_meta["fields"]
    }
    (flow,) = [w for w in meta["workflows"] if w["name"] == "expo_booking"]
    assert (flow["entity"], flow["field"], flow["initial"]) == (
        "ExpoBooking",
        "status",
        "requested",
    )
    assert [s["name"] for s in flow["states"]] == [
        "requested",
        "confirmed",
        "waiting",
        "paid",
        "cancelled",
    ]
    assert {r["name"] for r in meta["roles"]} >= {"admin", "fair_office", "fair_manager"}

    # -- creating ----------------------------------------------------------------------------
    fair = alice(
        'mutation { createFair(input: {name: "Chengdu spring", season: "spring", city: "Chengdu",'
        ' opensOn: "2025-03-20"}) { id name city } }'
    )["createFair"]
    create = (
        "mutation($input: ExpoBookingCreateInput!, $key: String) {"
        f" createExpoBooking(input: $input, idempotencyKey: $key) {{ {BOOKING} }} }}"
    )
    areas = [None, "10", "12.5", "20", "30"]
    inputs = [
        {
            "title": f"Booth A{i}",
            "booth": f"A{i}",
            "fairId": fair["id"],
            "areaM2": area,
            "fee": {"amount": str(1000 * i)},
        }
        for i, area in enumerate(areas, start=1)
    ]
    mine = []
    for i, values in enumerate(inputs, start=1):
        booking = alice(create, {"input": values, "key": f"alice-a{i}"})["createExpoBooking"]
        assert booking["status"] == "requested" and booking["owner"] == {"username": "alice"}
        mine.append(booking)
    # a retried create with the same key gives the first record; another request is refused
    again = alice(create, {"input": inputs[0], "key": "alice-a1"})["createExpoBooking"]
    assert again["id"] == mine[0]["id"]
    other = alice.refused(create, {"input": inputs[1], "key": "alice-a1"})
    assert other[0] == "VALIDATION", other
    chengdu = [
        dave(create, {"input": {"title": f"Booth C{i}", "booth": f"C{i}", "fairId": fair["id"]}})[
            "createExpoBooking"
        ]
        for i in (1, 2)
    ]
    code, message = alice.refused(
        'mutation($f: ID!) { createExpoBooking(input: {title: "", fairId: $f}) { id } }',
        {"f": fair["id"]},
    )
    assert code == "VALIDATION", message

    # -- listing with filters and paging -----------------------------------------------------
    page_query = (
        'query($after: String) { expoBookings(filter: {and: [{title: {startsWith: "Booth A"}},'
        ' {areaM2: {gte: "10"}}]}, orderBy: [{areaM2: DESC}], first: 2, after: $after)'
        " { totalCount pageInfo { hasNextPage endCursor } edges { cursor node { id areaM2 } } } }"
    )
    seen, after, pages = [], None, 0
    while True:
        page = alice(page_query, {"after": after})["expoBookings"]
        assert page["totalCount"] == 4
        seen += [edge["node"] for edge in page["edges"]]
        pages += 1
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
        assert after == page["edges"][-1]["cursor"]
    assert pages == 2
    assert [float(b["areaM2"]) for b in seen] == [30, 20, 12.5, 10]
    assert code_of(alice.raw(page_query, {"after": "forged"})) in ("VALIDATION", "LIMIT_EXCEEDED")
    by_fair = '{ expoBookings(filter: {fair: {name: {eq: "Chengdu spring"}}}) { totalCount } }'
    nested = "{ fairs { nodes { name bookings { totalCount nodes { title } } } } }"
    # team covers the user's team and its sub-teams; a sub-team does not see its parent's
    for user, count in ((alice, 7), (carol, 7), (dave, 2), (eve, 0)):
        assert user(by_fair)["expoBookings"]["totalCount"] == count
        (fair_node,) = user(nested)["fairs"]["nodes"]  # fairs themselves are for all
        assert fair_node["bookings"]["totalCount"] == count
        assert len(fair_node["bookings"]["nodes"]) == count
    assert {b["title"] for b in dave(nested)["fairs"]["nodes"][0]["bookings"]["nodes"]} == {
        "Booth C1",
        "Booth C2",
    }

    # -- the workflow: right roles and teams move it, wrong ones are refused -------------------
    target = mine[1]["id"]  # 10 m2
    code, message = alice.refused(FIRE, {"id": target, "trigger": "confirm"})
    assert code == "INVALID_TRANSITION" and "fair_manager" in message, message
    assert eve.refused(FIRE, {"id": target, "trigger": "confirm"})[0] == "NOT_FOUND"
    assert dave.refused(FIRE, {"id": target, "trigger": "confirm"})[0] == "NOT_FOUND"
    assert carol.refused(FIRE, {"id": target, "trigger": "confirm", "version": 99})[0] == (
        "CONFLICT"
    )
    code, message = carol.refused(FIRE, {"id": mine[0]["id"], "trigger": "confirm"})
    assert code == "VALIDATION" and "is required to confirm" in message, message  # no area
    assert "areaM2" in message, message
    state = alice(HISTORY, {"id": target})["expoBooking"]
    assert state["status"] == "requested"
    available = {t["trigger"]: t for t in state["availableTransitions"]}
    assert not available["confirm"]["allowed"] and available["cancel"]["allowed"]

    steps = [
        (carol, "confirm", "requested", "confirmed"),
        (alice, "invoice", "confirmed", "waiting"),
    ]
    for user, trigger, source, dest in steps:
        result = user(FIRE, {"id": target, "trigger": trigger})["fireTransition"]
        assert (result["previousState"], result["state"]) == (source, dest)
        assert result["event"]["trigger"] == trigger
    assert alice.refused(FIRE, {"id": target, "trigger": "pay"})[0] == "INVALID_TRANSITION"
    assert eve.refused(FIRE, {"id": target, "trigger": "pay"})[0] == "NOT_FOUND"
    assert carol(FIRE, {"id": target, "trigger": "pay"})["fireTransition"]["state"] == "paid"
    # a manager of the parent team reaches the sub-team's records too
    confirmed = carol(
        'mutation($id: ID!) { updateExpoBooking(id: $id, input: {areaM2: "8"}) { areaM2 } }',
        {"id": chengdu[0]["id"]},
    )
    assert float(confirmed["updateExpoBooking"]["areaM2"]) == 8
    assert carol(FIRE, {"id": chengdu[0]["id"], "trigger": "confirm"})["fireTransition"][
        "state"
    ] == ("confirmed")
    # cancelling needs a reason, which lands in the record
    code, message = alice.refused(FIRE, {"id": mine[2]["id"], "trigger": "cancel"})
    assert code == "VALIDATION" and "reason" in message, message
    cancel = {"id": mine[2]["id"], "trigger": "cancel", "payload": {"reason": "budget cut"}}
    assert alice(FIRE, cancel)["fireTransition"]["state"] == "cancelled"

    # -- history ----------------------------------------------------------------------------
    paid = alice(HISTORY, {"id": target})["expoBooking"]
    assert paid["status"] == "paid" and paid["availableTransitions"] == []
    assert [
        (e["trigger"], e["fromState"], e["toState"], e["actor"]["username"])
        for e in paid["history"]
    ] == [
        (None, None, "requested", "alice"),
        ("confirm", "requested", "confirmed", "carol"),
        ("invoice", "confirmed", "waiting", "alice"),
        ("pay", "waiting", "paid", "carol"),
    ]
    cancelled = alice(HISTORY, {"id": mine[2]["id"]})["expoBooking"]
    assert cancelled["cancelReason"] == "budget cut"
    assert cancelled["history"][-1]["payload"] == {"reason": "budget cut"}
    states = alice('{ expoBookings(filter: {status: {in: ["paid", "cancelled"]}}) { totalCount } }')
    assert states["expoBookings"]["totalCount"] == 2

    # -- the other team sees nothing of it ---------------------------------------------------
    assert eve("{ expoBookings { totalCount nodes { id } } }")["expoBookings"] == {
        "totalCount": 0,
        "nodes": [],
    }
    for booking in (*mine, *chengdu):
        assert eve(HISTORY, {"id": booking["id"]}) == {"expoBooking": None}
        assert eve.refused(FIRE, {"id": booking["id"], "trigger": "cancel"})[0] == "NOT_FOUND"
    assert eve.refused(
        'mutation($id: ID!) { updateExpoBooking(id: $id, input: {title: "mine"}) { id } }',
        {"id": target},
    )[0] == ("NOT_FOUND")
    assert eve.refused("mutation($id: ID!) { deleteExpoBooking(id: $id) }", {"id": target})[0] == (
        "NOT_FOUND"
    )
    assert eve("{ users { nodes { username ownedExpoBookings { totalCount } } } }")["users"][
        "nodes"
    ] == [{"username": name, "ownedExpoBookings": {"totalCount": 0}} for name in ("root", *USERS)]
    assert admin(by_fair)["expoBookings"]["totalCount"] == 7  # nothing was lost on the way

    # -- the owner is told in the inbox (the worker of `serve --worker` delivers) -------------
    deadline = time.monotonic() + 10
    while alice("{ unreadCount }")["unreadCount"] < 1 and time.monotonic() < deadline:
        time.sleep(0.2)
    notes = alice("{ notifications { nodes { template payload } } }")["notifications"]["nodes"]
    assert [n["template"] for n in notes] == ["booking_paid"]
    assert carol("{ unreadCount }")["unreadCount"] == 0


def code_of(result: dict[str, Any]) -> str | None:
    errors = result.get("errors") or []
    return errors[0]["extensions"]["code"] if errors else None
