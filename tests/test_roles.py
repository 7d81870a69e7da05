"""Roles: the engine's admin, plugin roles, the admin's roles.yaml, and every refusal."""

from __future__ import annotations

from pathlib import Path

import pytest

from guanxi.engine import Config, ConfigError, Engine, hookimpl
from guanxi.engine.roles import RoleDef, load_roles

ALL = {"read": "all", "create": "all", "update": "all", "delete": "all"}
NONE = {"read": "none", "create": "none", "update": "none", "delete": "none"}

CUSTOMER_MANAGER = """\
roles:
  customer_manager:
    label: Customer manager
    labels: {zh: 客户经理}
    default: {read: own, create: own, update: own, delete: none}
    entities:
      Fair: {read: all}
    hidden_fields: {ExpoBooking: [fee]}
    export: own
"""


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "home"
    path.mkdir()
    return path


@pytest.fixture
def build(home: Path, tmp_path: Path, test_plugin):
    """An Engine (database not opened) with the expo plugin and ``extra`` plugins."""

    def build(*extra: object, use_entry_points: bool = False) -> Engine:
        config = Config(home=home, database_url=f"sqlite:///{tmp_path}/g.db")
        plugins = [test_plugin("expo"), *extra]
        return Engine(config, plugins=plugins, use_entry_points=use_entry_points)

    return build


def roles_file(home: Path, text: str) -> Path:
    path = home / "roles.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def problems_of(build) -> list[str]:
    with pytest.raises(ConfigError) as info:
        build()
    return [str(p) for p in info.value.problems]


class Contributes:
    """A plugin contributing one role definition."""

    def __init__(self, role: str, definition: object, name: str = "contributes") -> None:
        self.name = name
        self.role = role
        self.definition = definition

    @hookimpl
    def register_roles(self, register):
        register(self.role, self.definition)


def test_the_engine_ships_admin_with_every_right(build):
    admin = build().role_defs["admin"]
    assert admin.default == ALL and admin.export == "all"
    assert (admin.label, admin.origin) == ("System administrator", "engine")


def test_plugin_roles_are_loaded_with_their_origin(build):
    role = build().role_defs["fair_office"]
    assert role.origin == "plugin expo" and role.labels == {"zh": "会展部"}


def test_scopes_a_role_does_not_give_are_none(build):
    role = build().role_defs["fair_office"]
    assert role.default == NONE and role.export == "none"


def test_the_shipped_sales_roles_load(home, tmp_path):
    # without the expo test plugin, whose Quote entity would clash with the sales one
    config = Config(home=home, database_url=f"sqlite:///{tmp_path}/g.db", plugins=("sales",))
    roles = Engine(config).role_defs
    assert {"executive", "sales_supervisor", "customer_manager", "finance"} <= set(roles)
    assert roles["customer_manager"].default["read"] == "own"


def test_roles_yaml_adds_a_role_with_its_scopes(build, home):
    path = roles_file(home, CUSTOMER_MANAGER)
    role = build().role_defs["customer_manager"]
    assert role == RoleDef(
        name="customer_manager",
        label="Customer manager",
        origin=f"{path}:2",
        labels={"zh": "客户经理"},
        default={"read": "own", "create": "own", "update": "own", "delete": "none"},
        entities={"Fair": {"read": "all", "create": "own", "update": "own", "delete": "none"}},
        hidden_fields={"ExpoBooking": frozenset({"fee"})},
        export="own",
    )


def test_an_entity_entry_is_completed_from_the_default(build, home):
    roles_file(home, CUSTOMER_MANAGER)
    role = build().role_defs["customer_manager"]
    assert role.scope("Fair", "read") == "all"
    assert role.scope("Fair", "update") == "own"
    assert role.scope("ExpoBooking", "read") == "own"


def test_hidden_fields_are_hidden_only_on_their_entity(build, home):
    roles_file(home, CUSTOMER_MANAGER)
    role = build().role_defs["customer_manager"]
    assert role.hides("ExpoBooking", "fee") and not role.hides("Fair", "fee")


def test_roles_yaml_replaces_a_plugin_role_of_the_same_name(build, home):
    path = roles_file(home, "roles:\n  fair_office:\n    default: {read: team}\n")
    role = build().role_defs["fair_office"]
    assert role.origin == f"{path}:2" and role.default["read"] == "team"
    assert role.labels == {}


def test_roles_yaml_cannot_redefine_admin(build, home):
    path = roles_file(home, "roles:\n  admin: {default: {read: none}}\n")
    assert problems_of(build) == [
        f"{path}:2: role admin belongs to the engine and cannot be redefined"
    ]


def test_a_plugin_cannot_contribute_admin(build):
    with pytest.raises(ConfigError, match="role 'admin' is contributed twice"):
        build(Contributes("admin", {}))


def test_an_empty_roles_file_adds_nothing(build, home):
    roles_file(home, "")
    assert set(build().role_defs) == {"admin", "fair_office"}


def test_an_unknown_scope_names_file_and_line(build, home):
    path = roles_file(home, "roles:\n  clerk:\n    default: {read: mine}\n")
    assert problems_of(build) == [
        f"{path}:3: role clerk: default: unknown scope 'mine' for read; "
        "use none, own, team, own_or_unowned, team_or_unowned, all"
    ]


def test_an_unknown_operation_names_file_and_line(build, home):
    path = roles_file(home, "roles:\n  clerk:\n    default: {browse: all}\n")
    [problem] = problems_of(build)
    assert problem.startswith(f"{path}:3: role clerk: default: unknown operation 'browse'")


def test_an_unknown_entity_names_file_and_line(build, home):
    path = roles_file(home, "roles:\n  clerk:\n    entities:\n      Product: {read: all}\n")
    assert problems_of(build) == [f"{path}:4: role clerk: unknown entity 'Product'"]


def test_an_unknown_hidden_field_names_file_and_line(build, home):
    path = roles_file(home, "roles:\n  clerk:\n    hidden_fields: {Fair: [name, budget]}\n")
    assert problems_of(build) == [f"{path}:3: role clerk: Fair has no field(s) 'budget'"]


def test_hidden_fields_of_an_unknown_entity_are_refused(build, home):
    path = roles_file(home, "roles:\n  clerk:\n    hidden_fields: {Payment: [method]}\n")
    assert problems_of(build) == [
        f"{path}:3: role clerk: hidden_fields names unknown entity 'Payment'"
    ]


def test_an_unknown_key_in_a_role_is_refused(build, home):
    path = roles_file(home, "roles:\n  clerk:\n    lable: Clerk\n")
    [problem] = problems_of(build)
    assert problem.startswith(f"{path}:3: role clerk: unknown key 'lable'")


def test_an_unknown_top_level_key_is_refused(build, home):
    path = roles_file(home, "roles: {}\npermissions: {}\n")
    assert problems_of(build) == [
        f"{path}:2: unknown key 'permissions'; a roles file has only `roles:`"
    ]


def test_export_does_not_take_own_or_unowned(build, home):
    path = roles_file(home, "roles:\n  clerk: {export: own_or_unowned}\n")
    assert problems_of(build) == [
        f"{path}:2: role clerk: unknown export scope 'own_or_unowned'; use none, own, team, all"
    ]


def test_a_role_name_must_be_snake_case(build, home):
    path = roles_file(home, "roles:\n  Clerk: {}\n")
    assert problems_of(build) == [f"{path}:2: role name 'Clerk' must be snake_case (a-z, 0-9, _)"]


def test_every_problem_of_the_file_is_reported_not_just_the_first(build, home):
    roles_file(
        home,
        "roles:\n  clerk:\n    default: {read: mine}\n    export: every\n"
        "  porter:\n    entities: {Boat: {read: all}}\n",
    )
    assert [p.split(": ", 1)[0].rsplit(":", 1)[1] for p in problems_of(build)] == ["3", "4", "6"]


def test_unsafe_yaml_in_the_roles_file_is_refused(build, home):
    path = roles_file(home, "roles: !!python/object/apply:os.system [echo]\n")
    [problem] = problems_of(build)
    assert problem.startswith(f"{path}:1: YAML tag !!python/object/apply:os.system")


def test_a_bad_plugin_role_names_the_plugin(build):
    with pytest.raises(ConfigError) as info:
        build(Contributes("booth_clerk", {"default": {"read": "everything"}}, name="booths"))
    assert str(info.value) == (
        "plugin booths: role booth_clerk: default: unknown scope 'everything' for read; "
        "use none, own, team, own_or_unowned, team_or_unowned, all"
    )


def test_load_roles_reads_contributions_and_the_admin_file(build, home):
    engine = build()
    path = roles_file(home, CUSTOMER_MANAGER)
    roles = load_roles(engine.roles, path, engine.registry)
    assert list(roles) == ["admin", "fair_office", "customer_manager"]


def test_load_roles_without_an_admin_file(build):
    engine = build()
    assert list(load_roles(engine.roles, None, engine.registry)) == ["admin", "fair_office"]


def test_a_role_label_defaults_to_its_name(build, home):
    roles_file(home, "roles:\n  booth_clerk:\n")
    assert build().role_defs["booth_clerk"].label == "Booth clerk"


def test_a_role_label_in_a_language_falls_back_to_the_label(build, home):
    roles_file(home, CUSTOMER_MANAGER)
    role = build().role_defs["customer_manager"]
    assert role.label_in("zh") == "客户经理" and role.label_in("fr") == "Customer manager"
