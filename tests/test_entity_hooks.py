"""``for_entities``: per-record hooks narrowed to the entities a plugin acts on."""

from __future__ import annotations

import pytest

from guanxi.engine import Actor, for_entities, hookimpl


class Watcher:
    """Records every per-record hook call it gets; ``entities`` narrows it (or not)."""

    name = "watcher"

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    @hookimpl
    @for_entities("Fair")
    def before_commit(self, engine, event):
        self.calls.append(("before_commit", event.entity))

    @hookimpl
    @for_entities("Fair")
    def record_written(self, engine, event):
        self.calls.append(("record_written", event.entity))

    @hookimpl
    @for_entities("Fair")
    def mask_values(self, engine, actor, entity, values):
        self.calls.append(("mask_values", entity))
        return {"season": "hidden"} if values.get("season") else None

    @hookimpl
    @for_entities("Fair")
    def masked_fields(self, engine, actor, entity):
        self.calls.append(("masked_fields", entity))
        return ("season",)


class Everything:
    """Unmarked: called for every entity, as before ``for_entities`` existed."""

    name = "everything"

    def __init__(self) -> None:
        self.entities: list[str] = []

    @hookimpl
    def record_written(self, engine, event):
        self.entities.append(event.entity)


@pytest.fixture
def world(make_engine, test_plugin):
    watcher, everything = Watcher(), Everything()
    engine = make_engine(test_plugin("expo"), watcher, everything)
    fair = engine.records.create("Fair", {"name": "Chengdu spring", "season": "spring"})
    watcher.calls.clear()
    everything.entities.clear()
    return engine, watcher, everything, fair


def test_a_narrowed_hook_is_called_for_its_entity(world):
    engine, watcher, _, _ = world
    engine.records.create("Fair", {"name": "Chengdu autumn"})
    assert watcher.calls == [("before_commit", "Fair"), ("record_written", "Fair")]


def test_a_narrowed_hook_is_not_called_for_other_entities(world):
    engine, watcher, everything, fair = world
    engine.records.create("ExpoBooking", {"title": "Hall 3", "fair": fair.id})
    assert watcher.calls == []
    assert everything.entities == ["ExpoBooking"]


def test_create_many_calls_a_narrowed_hook_only_for_its_entity(world):
    engine, watcher, everything, fair = world
    engine.records.create_many(
        "ExpoBooking", [{"title": f"Booth {i}", "fair": fair.id} for i in range(3)]
    )
    engine.records.create_many("Fair", [{"name": "Guangzhou"}, {"name": "Xiamen"}])
    assert watcher.calls == [
        ("before_commit", "Fair"),
        ("before_commit", "Fair"),
        ("record_written", "Fair"),
        ("record_written", "Fair"),
    ]
    assert everything.entities == ["ExpoBooking"] * 3 + ["Fair"] * 2


def test_a_narrowed_mask_applies_to_its_entity_only(world):
    engine, watcher, _, fair = world
    reader = Actor(id=1, username="reader", roles=("admin",))
    booking = engine.records.create("ExpoBooking", {"title": "Hall 3", "fair": fair.id})
    assert engine.records.get("Fair", fair.id, actor=reader)["season"] == "hidden"
    assert engine.records.get("ExpoBooking", booking.id, actor=reader)["title"] == "Hall 3"
    assert ("mask_values", "ExpoBooking") not in watcher.calls
    assert ("mask_values", "Fair") in watcher.calls


def test_for_entities_needs_at_least_one_entity_name():
    with pytest.raises(TypeError, match="one or more entity names"):
        for_entities()


def test_entity_hooks_refuses_a_hook_that_is_not_per_record(world):
    engine, *_ = world
    with pytest.raises(ValueError, match="register_entities is not a hook called for one"):
        engine.entity_hooks("register_entities", "Fair")


def test_an_entity_no_implementation_acts_on_gets_no_caller(make_engine):
    engine = make_engine(Watcher())  # and the engine's own, which act on users only
    assert engine.entity_hooks("record_written", "Fair") is not None
    assert engine.entity_hooks("record_written", "User") is not None
    assert engine.entity_hooks("record_written", "Team") is None
