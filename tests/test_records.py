"""The record API: create, get, update, delete, restore, list, create_many, audit."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

import pytest

from guanxi.engine import (
    SYSTEM,
    Actor,
    ConflictError,
    Money,
    NotFound,
    Record,
    ValidationError,
)

from .conftest import sql_log


@pytest.fixture
def expo(test_plugin):
    return test_plugin("expo")


@pytest.fixture
def engine(make_engine, expo):
    return make_engine(expo)


@pytest.fixture
def fair(engine):
    return engine.records.create("Fair", {"name": "Chengdu spring", "season": "spring"})


def booking(engine, fair, **extra):
    return engine.records.create("ExpoBooking", {"title": "Booth A", "fair": fair.id, **extra})


def problems(exc: ValidationError) -> dict[str, str]:
    return {p.field: p.message for p in exc.problems}


def test_create_returns_an_immutable_record_with_base_fields(engine, fair):
    assert isinstance(fair, Record)
    assert fair.id > 0 and fair.version == 1 and fair.deleted_at is None
    assert isinstance(fair.created_at, datetime) and fair.name == "Chengdu spring"
    with pytest.raises(AttributeError):
        fair.name = "x"


def test_create_stores_each_field_type(engine, fair):
    rec = booking(
        engine,
        fair,
        booth_m2="12.50",
        fee={"amount": "3000.00", "currency": "eur"},
        contact_email="Li@Example.COM",
        contact_phone="+86 28 8888 6666",
        starts_on="2027-03-01",
        notes="多行\n文本",
        extra={"tags": ["酒", 1]},
        rank=3,
        ratio=0.5,
        arrives_at="2027-03-01T08:00:00+08:00",
    )
    got = engine.records.get("ExpoBooking", rec.id)
    assert got.booth_m2 == Decimal("12.50")
    assert got.fee == Money(Decimal("3000.00"), "EUR")
    assert got.contact_email == "Li@example.com"
    assert got.starts_on == date(2027, 3, 1)
    assert got.extra == {"tags": ["酒", 1]}
    assert got.arrives_at == datetime(2027, 3, 1, 0, 0)  # stored as naive UTC
    assert got.confirmed is False  # default
    assert got.fair == fair.id


def test_money_without_currency_takes_the_installation_currency(engine, fair):
    rec = booking(engine, fair, fee="12.5")
    assert rec.fee == Money(Decimal("12.5"), "CNY")


def test_create_reports_every_bad_field_at_once_and_writes_nothing(engine, fair):
    with pytest.raises(ValidationError) as info:
        engine.records.create(
            "ExpoBooking",
            {"fair": fair.id, "rank": 9, "contact_email": "nope", "booth_m2": "-1", "bogus": 1},
        )
    found = problems(info.value)
    assert set(found) == {"title", "rank", "contact_email", "booth_m2", "bogus"}
    assert found["title"] == "is required"
    assert "at most 5" in found["rank"]
    assert engine.records.list("ExpoBooking").total_count == 0


def test_validation_error_names_entity_and_field(engine):
    with pytest.raises(ValidationError) as info:
        engine.records.create("Fair", {"name": "x" * 121})
    assert info.value.field == "name"
    assert "Fair.name" in str(info.value)


def test_enum_value_must_be_a_choice(engine):
    with pytest.raises(ValidationError) as info:
        engine.records.create("Fair", {"name": "x", "season": "winter"})
    assert "spring, autumn" in problems(info.value)["season"]


def test_ref_to_a_missing_record_is_refused(engine):
    with pytest.raises(ValidationError) as info:
        engine.records.create("ExpoBooking", {"title": "t", "fair": 999})
    assert problems(info.value)["fair"] == "Fair #999 does not exist"


def test_ref_to_a_deleted_record_is_refused(engine, fair):
    engine.records.delete("Fair", fair.id)
    with pytest.raises(ValidationError):
        booking(engine, fair)


def test_unique_value_of_a_live_record_is_refused(engine, fair):
    with pytest.raises(ValidationError) as info:
        engine.records.create("Fair", {"name": "Chengdu spring"})
    assert f"Fair #{fair.id}" in problems(info.value)["name"]


def test_unique_value_of_a_deleted_record_may_be_reused(engine, fair):
    engine.records.delete("Fair", fair.id)
    again = engine.records.create("Fair", {"name": "Chengdu spring"})
    assert again.id != fair.id


def test_update_patches_only_the_fields_sent(engine, fair):
    rec = booking(engine, fair, booth_m2="9", hall="A1")
    updated = engine.records.update("ExpoBooking", rec.id, {"hall": "B2"})
    assert updated.hall == "B2" and updated.booth_m2 == Decimal("9")
    assert updated.version == 2 and updated.updated_at >= rec.updated_at


def test_update_with_a_stale_version_is_a_conflict(engine, fair):
    engine.records.update("Fair", fair.id, {"season": "autumn"})
    with pytest.raises(ConflictError):
        engine.records.update("Fair", fair.id, {"season": "spring"}, expected_version=1)
    assert engine.records.get("Fair", fair.id).season == "autumn"


def test_update_cannot_clear_a_required_field(engine, fair):
    with pytest.raises(ValidationError) as info:
        engine.records.update("Fair", fair.id, {"name": None})
    assert problems(info.value) == {"name": "is required"}


def test_update_without_changes_keeps_the_version(engine, fair):
    same = engine.records.update("Fair", fair.id, {"name": "Chengdu spring"})
    assert same.version == 1


def test_readonly_fields_cannot_be_written_by_users(engine):
    user = Actor(id=None, username="alice", roles=frozenset({"admin"}))
    with pytest.raises(ValidationError) as info:
        engine.records.create("Quote", {"title": "q", "total": "5"}, actor=user)
    assert problems(info.value) == {"total": "is read-only"}


def test_internal_fields_cannot_be_written_by_users(engine):
    user = Actor(id=None, username="alice", roles=frozenset({"admin"}))
    with pytest.raises(ValidationError):
        engine.records.create("User", {"username": "bob", "password_hash": "x"}, actor=user)


def test_parts_are_written_with_their_parent_and_totals_computed(engine):
    quote = engine.records.create(
        "Quote",
        {
            "title": "Ads 2027",
            "lines": [
                {"product": "banner", "quantity": 2, "unit_price": "100.00"},
                {"product": "print", "quantity": 1, "unit_price": "50.50"},
            ],
        },
    )
    assert quote.total == Decimal("250.50")
    lines = engine.records.list("QuoteLine", filter={"quote": {"id": {"eq": quote.id}}})
    assert lines.total_count == 2


def test_updating_parts_replaces_them(engine):
    quote = engine.records.create(
        "Quote", {"title": "q", "lines": [{"product": "a", "quantity": 1, "unit_price": "1"}]}
    )
    updated = engine.records.update(
        "Quote", quote.id, {"lines": [{"product": "b", "quantity": 3, "unit_price": "2"}]}
    )
    assert updated.total == Decimal("6")
    live = engine.records.list("QuoteLine")
    assert [r.product for r in live.records] == ["b"]


def test_a_bad_part_names_its_position_and_nothing_is_written(engine):
    with pytest.raises(ValidationError) as info:
        engine.records.create(
            "Quote", {"title": "q", "lines": [{"product": "a", "quantity": 0, "unit_price": "1"}]}
        )
    assert "lines[0].quantity" in problems(info.value)
    assert engine.records.list("Quote").total_count == 0


def test_delete_is_soft_and_restore_brings_the_record_back(engine, fair):
    deleted = engine.records.delete("Fair", fair.id)
    assert deleted.deleted_at is not None
    with pytest.raises(NotFound):
        engine.records.get("Fair", fair.id)
    assert engine.records.get("Fair", fair.id, deleted=True).id == fair.id
    restored = engine.records.restore("Fair", fair.id)
    assert restored.deleted_at is None and restored.version == 3


def test_deleting_a_record_referenced_through_a_required_ref_is_a_conflict(engine, fair):
    booking(engine, fair)
    with pytest.raises(ConflictError) as info:
        engine.records.delete("Fair", fair.id)
    assert "ExpoBooking.fair" in str(info.value)


def test_deleting_a_parent_deletes_and_restores_its_parts(engine):
    quote = engine.records.create(
        "Quote", {"title": "q", "lines": [{"product": "a", "quantity": 1, "unit_price": "1"}]}
    )
    engine.records.delete("Quote", quote.id)
    assert engine.records.list("QuoteLine").total_count == 0
    engine.records.restore("Quote", quote.id)
    assert engine.records.list("QuoteLine").total_count == 1


def test_restoring_onto_a_reused_unique_value_is_a_conflict(engine, fair):
    engine.records.delete("Fair", fair.id)
    engine.records.create("Fair", {"name": "Chengdu spring"})
    with pytest.raises(ConflictError):
        engine.records.restore("Fair", fair.id)


def test_owned_records_belong_to_their_creator(engine, fair):
    user = engine.records.create("User", {"username": "li.lei"})
    actor = Actor(id=user.id, username="li.lei", roles=frozenset({"admin"}))
    rec = engine.records.create("ExpoBooking", {"title": "t", "fair": fair.id}, actor=actor)
    assert rec.owner == user.id and rec.created_by == user.id


def test_records_created_by_the_system_are_unowned(engine, fair):
    assert booking(engine, fair).owner is None


def test_every_write_is_audited_with_field_changes(engine, fair):
    engine.records.update("Fair", fair.id, {"season": "autumn"})
    engine.records.delete("Fair", fair.id)
    trail = engine.records.audit_trail("Fair", fair.id)
    assert [t["action"] for t in trail] == ["create", "update", "delete"]
    assert trail[0]["changes"]["name"] == [None, "Chengdu spring"]
    assert trail[1]["changes"] == {"season": ["spring", "autumn"]}
    assert all(t["actor"] == "system" for t in trail)


def test_failed_write_leaves_no_audit(engine, fair):
    with pytest.raises(ValidationError):
        engine.records.update("Fair", fair.id, {"season": "winter"})
    assert len(engine.records.audit_trail("Fair", fair.id)) == 1


def test_record_written_hook_sees_every_write(engine, expo, fair):
    engine.records.update("Fair", fair.id, {"season": "autumn"})
    assert ("Fair", "create", fair.id) in expo.EVENTS
    assert ("Fair", "update", fair.id) in expo.EVENTS


def test_list_pages_with_signed_cursors(engine):
    for i in range(5):
        engine.records.create("Fair", {"name": f"fair {i}"})
    first = engine.records.list("Fair", first=2, order_by=[{"name": "ASC"}])
    assert [r.name for r in first.records] == ["fair 0", "fair 1"]
    assert first.total_count == 5 and first.has_next_page
    second = engine.records.list(
        "Fair", first=2, after=first.end_cursor, order_by=[{"name": "ASC"}]
    )
    assert [r.name for r in second.records] == ["fair 2", "fair 3"]
    last = engine.records.list("Fair", first=2, after=second.end_cursor, order_by=[{"name": "ASC"}])
    assert [r.name for r in last.records] == ["fair 4"] and not last.has_next_page


def test_a_list_asked_not_to_count_pages_the_same_without_a_total(engine):
    for i in range(5):
        engine.records.create("Fair", {"name": f"fair {i}"})
    order = [{"name": "ASC"}]
    with sql_log() as sent:
        page = engine.records.list("Fair", first=2, order_by=order, count=False)
    assert page.total_count is None and page.has_next_page
    assert [r.name for r in page.records] == ["fair 0", "fair 1"]
    assert not any("COUNT" in sql.upper() for sql in sent)
    rest = engine.records.list("Fair", after=page.end_cursor, order_by=order, count=False)
    assert [r.name for r in rest.records] == ["fair 2", "fair 3", "fair 4"]


def test_a_forged_cursor_is_refused(engine):
    engine.records.create("Fair", {"name": "a"})
    page = engine.records.list("Fair", first=1)
    forged = page.end_cursor[:-2] + ("AA" if page.end_cursor[-2:] != "AA" else "BB")
    with pytest.raises(ValidationError) as info:
        engine.records.list("Fair", after=forged)
    assert info.value.field == "after"


def test_page_size_is_capped(engine):
    with pytest.raises(ValidationError) as info:
        engine.records.list("Fair", first=10_000)
    assert info.value.field == "first"


def test_list_excludes_deleted_unless_asked(engine, fair):
    engine.records.create("Fair", {"name": "other"})
    engine.records.delete("Fair", fair.id)
    assert [r.name for r in engine.records.list("Fair").records] == ["other"]
    binned = engine.records.list("Fair", filter={"deleted": True})
    assert [r.id for r in binned.records] == [fair.id]


def test_create_many_writes_all_rows_and_audits_each(engine):
    ids = engine.records.create_many("Fair", ({"name": f"f{i}"} for i in range(25)), batch_size=10)
    assert len(ids) == 25
    assert engine.records.list("Fair").total_count == 25
    assert engine.records.audit_trail("Fair", ids[-1])[0]["action"] == "create"


def test_create_many_writes_nothing_when_a_row_is_bad_and_names_the_row(engine):
    rows = [{"name": "a"}, {"name": "b", "season": "winter"}, {"name": "a"}]
    with pytest.raises(ValidationError) as info:
        engine.records.create_many("Fair", rows)
    where = {(p.row, p.field) for p in info.value.problems}
    assert (2, "season") in where and (3, "name") in where
    assert engine.records.list("Fair").total_count == 0


def test_create_many_reports_progress(engine):
    seen = []
    engine.records.create_many(
        "Fair", ({"name": f"f{i}"} for i in range(5)), batch_size=2, progress=seen.append
    )
    assert seen == [2, 4, 5]


def test_unknown_entity_is_a_validation_error(engine):
    with pytest.raises(ValidationError):
        engine.records.create("Nope", {})


def test_two_engines_in_one_process_are_independent(make_engine, expo):
    a = make_engine(expo)
    b = make_engine()
    assert "Fair" in a.registry and "Fair" not in b.registry
    assert a.records.create("Fair", {"name": "x"}).id == 1
    assert SYSTEM.is_system


def test_only_admins_list_the_recycle_bin(engine):
    clerk = Actor(id=None, username="li", roles=frozenset({"fair_office"}))
    from guanxi.engine import PermissionDenied

    with pytest.raises(PermissionDenied):
        engine.records.list("Fair", filter={"deleted": True}, actor=clerk)


def test_text_with_a_nul_character_is_a_validation_error(engine):
    with pytest.raises(ValidationError) as info:
        engine.records.create("Fair", {"name": "bad\x00name"})
    assert "NUL" in problems(info.value)["name"]


def test_json_with_a_nul_character_is_a_validation_error(engine, fair):
    with pytest.raises(ValidationError):
        booking(engine, fair, extra={"note": "a\x00b"})


@pytest.mark.parametrize(
    ("starts_on", "arrives_at"),
    [
        (date(2027, 3, 1), datetime(2027, 3, 1, 9, 30)),
        (date(2027, 12, 31), datetime(2027, 12, 31, 23, 59, 59, 999_999)),
        (date(999, 5, 1), datetime(1999, 1, 2, 3, 4, 5, 60)),
    ],
)
def test_dates_and_datetimes_read_back_as_written(engine, fair, starts_on, arrives_at):
    created = booking(engine, fair, starts_on=starts_on, arrives_at=arrives_at)
    again = engine.records.get("ExpoBooking", created.id)
    assert (again.starts_on, again.arrives_at) == (starts_on, arrives_at)
    found = engine.records.list(
        "ExpoBooking", filter={"starts_on": {"eq": starts_on.isoformat()}}
    ).records
    assert [r.id for r in found] == [created.id]
