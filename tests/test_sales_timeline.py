"""The customer timeline (客户动态): every source newest first, paged with cursors,
permission-filtered, open to other plugins through the ``timeline_entries`` hook.

Customer manager li (team East) owns the customer "Sichuan Liquor" and its history;
zhao is a customer manager of team West, chen the supervisor of East, boss an executive.
The clock starts at 2027-03-01 09:00 UTC.
"""

from __future__ import annotations

import types
from datetime import datetime

import pytest

from guanxi.engine import (
    NotFound,
    PluginError,
    TimelineEntry,
    TimelineKey,
    ValidationError,
    hookimpl,
)
from guanxi.engine.permissions import add_member
from guanxi.engine.timeline import newest_first, newest_records, timeline

from .conftest import sql_log
from .graphql_client import graphql_client

#: The customer's history as li sees it, newest first: (kind, title, summary, actor).
LI_SEES = [
    ("payment", "Payment 12,000.00 CNY", "awaiting confirmation", "li"),
    ("contract", "Contract HT-2027-001", "signed · 24,000.00 CNY", "li"),
    ("workflow", "2027 subscriptions", "Lead → Visit (Schedule a visit)", "li"),
    ("task", "Send the rate card", "due 2027-03-05 18:00", "li"),
    ("workflow", "2027 subscriptions", "new, Lead", "li"),
    ("activity", "Call about prices", "Call", "li"),
    ("activity", "First visit", "Visit · Interested in ads", "li"),
]


class World:
    """li's customer with an opportunity, activities, a task, a contract and a payment."""

    def __init__(self, engine, clock) -> None:
        self.engine = engine
        records = engine.records
        records.create("Team", {"name": "East"})
        records.create("Team", {"name": "West"})
        people = {
            "li": ("customer_manager", "East"),
            "zhao": ("customer_manager", "West"),
            "chen": ("sales_supervisor", "East"),
            "boss": ("executive", None),
            "root": ("admin", None),
        }
        self.ids = {
            name: engine.auth.create_user(name, roles=[role], team=team).id
            for name, (role, team) in people.items()
        }
        self.li, self.zhao, self.chen, self.boss, self.root = (
            engine.auth.actor_for(self.ids[name]) for name in people
        )
        self.customer = records.create("Customer", {"name": "Sichuan Liquor"}, actor=self.li).id
        self.opportunity = records.create(
            "Opportunity",
            {"title": "2027 subscriptions", "customer": self.customer},
            actor=self.li,
        ).id  # workflow event "new, Lead" at 09:00
        self.log("First visit", "2027-02-20T10:00:00", kind="visit", outcome="Interested in ads")
        self.log("Call about prices", "2027-03-01T08:00:00", kind="call")
        clock.advance(hours=1)
        records.create(
            "Task",
            {"title": "Send the rate card", "customer": self.customer, "due": "2027-03-05T18:00"},
            actor=self.li,
        )  # created 10:00
        clock.advance(hours=1)
        engine.runtime.fire_transition(
            "Opportunity", self.opportunity, "schedule_visit", actor=self.li
        )  # 11:00
        contract = records.create(
            "Contract",
            {
                "customer": self.customer,
                "number": "HT-2027-001",
                "signed_on": "2027-03-02",
                "amount": "24000",
            },
            actor=self.li,
        ).id
        records.create(
            "Payment",
            {
                "customer": self.customer,
                "contract": contract,
                "amount": "12000",
                "paid_on": "2027-03-02",
            },
            actor=self.li,
        )

    def log(self, subject: str, at: str, *, actor=None, kind: str = "call", **values) -> int:
        return self.engine.records.create(
            "Activity",
            {"customer": self.customer, "subject": subject, "kind": kind, "at": at, **values},
            actor=actor or self.li,
        ).id

    def page(self, actor=None, first: int = 20, after: str | None = None, **kw):
        return timeline(
            self.engine,
            "Customer",
            self.customer,
            actor=actor or self.li,
            first=first,
            after=after,
            **kw,
        )

    def seen(self, actor=None, **kw) -> list[tuple]:
        return [(e.kind, e.title, e.summary, e.actor) for e in self.page(actor, **kw).entries]


@pytest.fixture
def engine(make_engine, clock):
    return make_engine(use_entry_points=True, plugins=("sales",), clock=clock)


@pytest.fixture
def world(engine, clock):
    return World(engine, clock)


# -- ordering and paging -----------------------------------------------------------------------
def test_the_timeline_lists_every_source_newest_first(world):
    assert world.seen() == LI_SEES


def test_entries_of_one_instant_sort_by_kind_then_newest_id(world):
    first = world.log("Visit A", "2027-02-25T10:00:00")
    second = world.log("Visit B", "2027-02-25T10:00:00")
    entries = world.page().entries
    # payment and contract share 2027-03-02 00:00: by kind, descending
    assert [e.kind for e in entries[:2]] == ["payment", "contract"]
    same = [e.record_id for e in entries if e.at == datetime(2027, 2, 25, 10)]
    assert same == [second, first]


def test_paging_with_after_walks_across_sources_without_gaps_or_repeats(world):
    walked, after, pages = [], None, []
    while True:
        page = world.page(first=3, after=after)
        pages.append((len(page.entries), page.has_next_page))
        walked += [(e.kind, e.title, e.summary, e.actor) for e in page.entries]
        if not page.has_next_page:
            break
        after = page.end_cursor
    assert pages == [(3, True), (3, True), (1, False)]
    assert walked == LI_SEES


def test_paging_one_by_one_splits_entries_of_the_same_instant(world):
    world.log("Visit A", "2027-02-25T10:00:00")
    world.log("Visit B", "2027-02-25T10:00:00")
    full = [(e.kind, e.id) for e in world.page().entries]
    walked, after = [], None
    for _ in range(len(full)):
        page = world.page(first=1, after=after)
        walked += [(e.kind, e.id) for e in page.entries]
        after = page.end_cursor
    assert walked == full
    assert world.page(first=1, after=after).entries == ()


def test_dated_entries_sit_at_the_start_of_their_day_in_the_installations_zone(make_engine, clock):
    engine = make_engine(
        use_entry_points=True, plugins=("sales",), clock=clock, timezone="Asia/Shanghai"
    )
    world = World(engine, clock)
    # 2027-03-02 00:00 in Shanghai is 2027-03-01 16:00 UTC: the activity shares the instant
    world.log("Evening call", "2027-03-01T16:00:00")
    entries = world.page().entries
    assert [(e.kind, e.at) for e in entries[:3]] == [
        ("payment", datetime(2027, 3, 1, 16)),
        ("contract", datetime(2027, 3, 1, 16)),
        ("activity", datetime(2027, 3, 1, 16)),
    ]
    after_payment = world.page(first=1).end_cursor
    assert [e.kind for e in world.page(first=2, after=after_payment).entries] == [
        "contract",
        "activity",
    ]


def test_a_page_takes_the_same_number_of_queries_however_long_the_history(world):
    def selects() -> int:
        with sql_log() as seen:
            page = world.page(first=5)
        assert len(page.entries) == 5
        return len([s for s in seen if s.lstrip().upper().startswith("SELECT")])

    short = selects()
    for day in range(1, 29):
        world.log(f"Call {day}", f"2027-01-{day:02d}T09:00:00")
        world.engine.records.create(
            "Task", {"title": f"Task {day}", "customer": world.customer}, actor=world.li
        )
    assert selects() == short


def test_a_page_of_the_largest_size_still_tells_whether_more_follow(world):
    world.engine.records.create_many(
        "Task",
        [{"title": f"Task {i}", "customer": world.customer} for i in range(200)],
        actor=world.li,
    )
    first = world.page(first=200)  # 207 entries; the task source alone has 201
    assert (len(first.entries), first.has_next_page) == (200, True)
    rest = world.page(first=200, after=first.end_cursor)
    assert (len(rest.entries), rest.has_next_page) == (7, False)


def test_a_cursor_of_another_timeline_or_tampered_with_is_refused(world):
    cursor = world.page(first=1).end_cursor
    other = world.engine.records.create("Customer", {"name": "Other Co"}, actor=world.li).id
    with pytest.raises(ValidationError) as info:
        timeline(world.engine, "Customer", other, actor=world.li, after=cursor)
    assert [(p.entity, p.field) for p in info.value.problems] == [("Customer", "after")]
    with pytest.raises(ValidationError):
        world.page(after=cursor[:-2] + ("AA" if cursor[-2:] != "AA" else "BB"))


def test_first_must_be_within_the_page_size_cap(world):
    with pytest.raises(ValidationError) as info:
        world.page(first=201)
    assert [(p.entity, p.field) for p in info.value.problems] == [("Customer", "first")]


# -- what each caller sees ---------------------------------------------------------------------
def test_another_teams_activity_on_a_shared_customer_is_shown_only_to_who_may_read_it(world):
    add_member(world.engine, "Customer", world.customer, world.ids["zhao"], "edit")
    world.log("Expo booth talk", "2027-02-28T15:00:00", actor=world.zhao, kind="meeting")
    theirs = ("activity", "Expo booth talk", "Meeting", "zhao")
    assert theirs not in world.seen(world.li)
    assert theirs not in world.seen(world.chen)  # li's supervisor: East only
    assert theirs in world.seen(world.boss)
    # zhao reads the shared customer and its payments, but not li's own records
    assert world.seen(world.zhao) == [LI_SEES[0], theirs]


def test_a_supervisor_sees_the_timeline_of_the_team(world):
    assert world.seen(world.chen) == LI_SEES


def test_the_timeline_of_a_customer_one_cannot_read_is_not_found(world):
    with pytest.raises(NotFound):
        world.page(world.zhao)


def test_a_merge_into_the_customer_appears_with_the_merged_history(world, clock):
    records = world.engine.records
    dup = records.create(
        "Customer", {"name": "Sichuan Liquor Co."}, actor=world.li, allow_duplicate=True
    ).id
    records.create(
        "Activity",
        {"customer": dup, "subject": "Old note", "kind": "note", "at": "2027-01-05T09:00:00"},
        actor=world.li,
    )
    clock.advance(hours=1)  # 12:00
    world.engine.merge("Customer", world.customer, [dup], actor=world.root)
    entries = world.page().entries
    merge = next(e for e in entries if e.kind == "merge")
    assert (merge.at, merge.title, merge.actor) == (
        datetime(2027, 3, 1, 12),
        "Duplicates merged into this customer",
        "root",
    )
    assert f"Merged Customer #{dup}" in merge.summary
    assert ("activity", "Old note") == (entries[-1].kind, entries[-1].title)


def test_a_customer_bound_to_a_workflow_shows_its_own_stage_changes(make_engine, clock, home):
    (home / "workflows" / "customer_status.yaml").write_text(
        "workflow: customer_status\n"
        "label: Customer status\n"
        "entity: Customer\n"
        "field: status\n"
        "initial: prospect\n"
        "states:\n"
        "  prospect: {label: Prospect}\n"
        "  active: {label: Active customer, final: true}\n"
        "transitions:\n"
        "  - {trigger: activate, label: Activate, source: prospect, dest: active}\n"
    )
    engine = make_engine(use_entry_points=True, plugins=("sales",), clock=clock)
    world = World(engine, clock)
    clock.advance(hours=1)  # 12:00
    engine.runtime.fire_transition("Customer", world.customer, "activate", actor=world.li)
    entries = world.page().entries
    mine = [(e.at.hour, e.title, e.summary) for e in entries if e.entity == "Customer"]
    assert mine == [
        (12, "Customer #1", "Prospect → Active customer (Activate)"),
        (9, "Customer #1", "new, Prospect"),
    ]


# -- other plugins -----------------------------------------------------------------------------
def helpdesk_plugin() -> types.ModuleType:
    """A third-party plugin: service tickets of a customer on its timeline."""
    module = types.ModuleType("guanxi_test_helpdesk")
    module.name = "helpdesk"
    module.requires = ("sales",)

    @hookimpl
    def register_entities(register):
        register(
            {
                "name": "Ticket",
                "label": "Ticket",
                "owned": True,
                "fields": {
                    "customer": {"type": "ref", "to": "Customer", "reverse": "tickets"},
                    "subject": {"type": "string", "required": True},
                    "opened_at": {"type": "datetime", "required": True},
                },
            }
        )

    @hookimpl
    def timeline_entries(engine, actor, entity, record_id, before, limit):
        if entity != "Customer":
            return []
        tickets = newest_records(
            engine,
            "Ticket",
            before,
            actor=actor,
            kind="ticket",
            field="opened_at",
            filter={"customer": {"id": {"eq": record_id}}},
            limit=limit,
        )
        return [
            TimelineEntry(
                at=t.opened_at,
                kind="ticket",
                id=t.id,
                title=t.subject,
                entity="Ticket",
                record_id=t.id,
                actor_id=t.owner,
            )
            for t in tickets
        ]

    module.register_entities = register_entities
    module.timeline_entries = timeline_entries
    return module


def test_another_plugin_adds_entries_through_the_hook(make_engine, clock):
    engine = make_engine(
        helpdesk_plugin(), use_entry_points=True, plugins=("sales", "helpdesk"), clock=clock
    )
    world = World(engine, clock)
    for subject, at, actor in (
        ("Invoice is wrong", "2027-03-01T10:30:00", world.li),
        ("Late magazine", "2027-02-01T08:00:00", world.li),
        ("Not li's ticket", "2027-03-01T10:45:00", world.root),
    ):
        engine.records.create(
            "Ticket",
            {"customer": world.customer, "subject": subject, "opened_at": at},
            actor=actor,
        )
    expected = [*LI_SEES[:3], ("ticket", "Invoice is wrong", None, "li"), *LI_SEES[3:]]
    expected.append(("ticket", "Late magazine", None, "li"))
    assert world.seen() == expected
    walked, after = [], None
    for _ in range(3):
        page = world.page(first=3, after=after)
        walked += [(e.kind, e.title, e.summary, e.actor) for e in page.entries]
        after = page.end_cursor
    assert walked == expected
    assert "Not li's ticket" in [e.title for e in world.page(world.root).entries]


def test_entries_a_plugin_returns_past_the_cursor_are_left_out(make_engine, clock):
    module = types.ModuleType("guanxi_test_careless")
    module.name = "careless"

    @hookimpl
    def timeline_entries(entity, record_id):  # ignores before and limit
        return [
            {"at": datetime(2027, 1, day), "kind": "note", "id": day, "title": "x"}
            for day in (1, 2, 3)
        ]

    module.timeline_entries = timeline_entries
    engine = make_engine(module, use_entry_points=True, plugins=("sales", "careless"), clock=clock)
    world = World(engine, clock)
    first = world.page(first=8)
    assert [e.kind for e in first.entries][-1] == "note"
    rest = world.page(after=first.end_cursor)
    assert [(e.kind, e.at.day) for e in rest.entries] == [("note", 2), ("note", 1)]


def test_a_plugin_answering_with_something_else_is_named(make_engine, clock):
    module = types.ModuleType("guanxi_test_broken")
    module.name = "broken"

    @hookimpl
    def timeline_entries():
        return [{"when": "yesterday"}]

    module.timeline_entries = timeline_entries
    engine = make_engine(module, use_entry_points=True, plugins=("sales", "broken"), clock=clock)
    world = World(engine, clock)
    with pytest.raises(PluginError, match=r"plugin broken: timeline_entries entry 0 has unknown"):
        world.page()


def test_newest_first_cuts_a_table_at_the_cursor(world):
    events = world.engine.classes["GxWorkflowEvent"]
    with world.engine.records.transaction():
        everything = newest_first(events.select(), world.engine, None, kind="workflow", limit=9)
        cursor = TimelineKey(everything[0].at, "workflow", everything[0].id)
        rest = newest_first(events.select(), world.engine, cursor, kind="workflow", limit=9)
        assert [e.id for e in rest] == [e.id for e in everything[1:]]


# -- GraphQL -----------------------------------------------------------------------------------
QUERY = """
query($id: ID!, $first: Int, $after: String) {
  customer(id: $id) {
    timeline(first: $first, after: $after) {
      pageInfo { hasNextPage endCursor }
      edges { cursor node { kind title } }
      nodes { at kind title summary entity recordId actor actorId }
    }
  }
}
"""


def test_the_timeline_over_graphql_pages_in_the_callers_language(world):
    engine = world.engine
    token = engine.auth.issue_token(world.ids["li"]).token
    with graphql_client(engine) as api:
        first = api.gql(
            QUERY,
            {"id": world.customer, "first": 2},
            token=token,
            headers={"Accept-Language": "zh-CN"},
        )
        assert "errors" not in first, first
        found = first["data"]["customer"]["timeline"]
        assert found["pageInfo"]["hasNextPage"] is True
        assert found["nodes"] == [
            {
                "at": "2027-03-02T00:00:00",
                "kind": "payment",
                "title": "回款 12,000.00 CNY",
                "summary": "待确认",
                "entity": "Payment",
                "recordId": "1",
                "actor": "li",
                "actorId": str(world.ids["li"]),
            },
            {
                "at": "2027-03-02T00:00:00",
                "kind": "contract",
                "title": "合同 HT-2027-001",
                "summary": "已签约 · 24,000.00 CNY",
                "entity": "Contract",
                "recordId": "1",
                "actor": "li",
                "actorId": str(world.ids["li"]),
            },
        ]
        assert found["edges"][-1]["cursor"] == found["pageInfo"]["endCursor"]
        rest = api.gql(
            QUERY,
            {"id": world.customer, "first": 10, "after": found["pageInfo"]["endCursor"]},
            token=token,
        )
    titles = [n["title"] for n in rest["data"]["customer"]["timeline"]["nodes"]]
    assert titles == [title for _, title, _, _ in LI_SEES[2:]]


def test_graphql_refuses_a_page_above_the_cap_and_a_foreign_cursor(world):
    with graphql_client(world.engine) as api:
        big = api.gql(QUERY, {"id": world.customer, "first": 1000})
        bad = api.gql(QUERY, {"id": world.customer, "after": "not-a-cursor"})
    assert big["errors"][0]["extensions"]["code"] == "LIMIT_EXCEEDED"
    assert bad["errors"][0]["extensions"]["code"] == "VALIDATION"
