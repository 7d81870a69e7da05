"""Workflow definitions: the YAML format, every check (a corpus of bad files), loading and
replacement, diagrams, and the ``guanxi workflow`` commands.

Definitions do not touch the database, so these tests build engines without opening one.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from guanxi.engine import Config, ConfigError, Engine, hookimpl
from guanxi.engine.cli import cli
from guanxi.engine.workflow_defs import (
    ActionCall,
    ConditionCall,
    WorkflowDef,
    check_workflow_file,
    load_workflows,
    parse_duration,
    read_workflow,
    to_dot,
    to_mermaid,
)

WORKFLOWS = Path(__file__).parent / "workflows"
EXAMPLE = WORKFLOWS / "expo_booking.yaml"
FULL = WORKFLOWS / "expo_booking_full.yaml"
BAD = WORKFLOWS / "bad"
GUANXI = str(Path(sys.executable).with_name("guanxi"))

#: Every bad file, the line its problem is reported at and (part of) the message.
CORPUS = {
    "alias_bomb": (3, "YAML anchors and aliases are not allowed"),
    "deep_document": (3, "nesting deeper than 64 levels"),
    "python_tag": (2, "YAML tag !!python/object/apply:os.system is not allowed"),
    "os_system_action": (
        23,
        "transition expire: unknown action 'os.system'; workflow YAML can only name built-in"
        " and registered actions",
    ),
    "duplicate_key": (8, "duplicate key 'initial' (first at line 7)"),
    "unknown_top_key": (8, "workflow: unknown key 'descripton'"),
    "unknown_state_key": (13, "state cancelled: unknown key 'lable' (did you mean 'label'"),
    "unknown_transition_key": (17, "transition pay: unknown key 'conditons' (did you mean"),
    "unknown_timeout_key": (11, "state waiting: timeout: unknown key 'every'"),
    "unknown_payload_option": (
        21,
        "transition cancel: payload: field 'reason': unknown option(s) mandatory",
    ),
    "missing_initial": (2, "missing required key 'initial'"),
    "unknown_entity": (5, "unknown entity 'ExpoBookin' (did you mean 'ExpoBooking'?)"),
    "wrong_state_field_type": (
        6,
        "ExpoBooking.booth_m2 is a decimal field; a state field must be an enum or a string",
    ),
    "state_not_a_choice": (6, "ExpoBooking.status has no choice(s) archived"),
    "undeclared_source": (
        19,
        "transition cancel: source 'confirmd' is not a declared state (did you mean 'confirmed'?)",
    ),
    "undeclared_dest": (
        20,
        "transition cancel: dest 'canceled' is not a declared state (did you mean 'cancelled'?)",
    ),
    "undeclared_initial": (7, "initial state 'new' is not declared"),
    "renamed_to_undeclared": (8, "renamed: 'pending' maps to undeclared state 'paying'"),
    "unreachable_state": (
        14,
        "state rejected cannot be reached from the initial state 'requested'",
    ),
    "no_way_out": (14, "state rejected is not final and has no transition out of it"),
    "leaves_final_state": (24, "transition reopen: leaves final state 'paid'"),
    "ambiguous_trigger": (
        18,
        "trigger 'invoice' from state 'confirmed': the transition at line 16 has no roles or"
        " conditions, so this one can never fire",
    ),
    "unknown_role": (15, "transition confirm: unknown role 'adminn' (did you mean 'admin'?)"),
    "unknown_condition": (
        17,
        "transition pay: unknown condition 'example.amount_recieved'; workflow YAML can only name"
        " conditions that plugins register (did you mean 'example.amount_received'?)",
    ),
    "unknown_condition_parameter": (
        17,
        "condition example.amount_received: unknown parameter 'currency' (takes min)",
    ),
    "unknown_action": (12, "state paid: unknown action 'sendmail'"),
    "unknown_action_parameter": (
        12,
        "state paid: action notify: unknown parameter 'cc' (takes to, template)",
    ),
    "missing_action_parameter": (12, "action notify: missing required parameter 'template'"),
    "wrong_action_parameter_type": (23, "action create: parameter 'unless_exists' must be a bool"),
    "set_unknown_field": (22, "set: 'cancel_reasn' is not a field of ExpoBooking"),
    "set_undeclared_payload": (22, "'payload.why': the transition declares no payload key 'why'"),
    "set_state_field": (22, "set: only transitions move the state field 'status'"),
    "set_bad_literal": (22, "set: ExpoBooking.rank must be a whole number"),
    "create_unknown_entity": (23, "transition expire: create: unknown entity 'Invoice'"),
    "assign_owner_bad_target": (
        12,
        "assign_owner: to must be actor, user:<name> or a ref field of ExpoBooking that points"
        " at User, not 'title'",
    ),
    "notify_unknown_role": (12, "state paid: notify: unknown role 'sales_boss'"),
    "unknown_require_field": (
        10,
        "state confirmed: require names 'booth_size', which is not a field of ExpoBooking",
    ),
    "bad_duration": (11, "state waiting: timeout: bad duration '7 days'"),
    "timeout_trigger_not_from_state": (
        11,
        "state waiting: timeout trigger 'confirm' is not a transition from 'waiting'",
    ),
    "timeout_trigger_and_actions": (11, "a timeout has either `trigger` or `actions`, not both"),
    "bad_outcome": (12, "state paid: outcome must be won or lost"),
    "rotten_final": (
        12,
        "state paid: rotten_after_days is for open states; this one is final or has an outcome",
    ),
    "bad_rotten_days": (
        10,
        "state confirmed: rotten_after_days must be a whole number of days, at least 1",
    ),
    "bad_probability": (10, "state confirmed: probability must be a number from 0 to 1"),
    "bad_payload_type": (21, "transition cancel: payload: field 'reason': unknown type 'strng'"),
    "star_in_a_list": (19, "transition cancel: `*` stands alone, not in a list of sources"),
}
#: Files whose entity is not loaded are skipped with a notice when loading, not refused.
SKIPPED_WHEN_LOADING = {"unknown_entity"}


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "home"
    (path / "workflows").mkdir(parents=True)
    return path


@pytest.fixture
def example_plugins(test_plugin):
    return [test_plugin("expo"), test_plugin("expo_status"), test_plugin("example_actions")]


@pytest.fixture
def build(home: Path, tmp_path: Path, example_plugins):
    """Build an Engine (database not opened) with the example plugins plus ``extra``."""

    def build(*extra: object, plugins: list[object] | None = None) -> Engine:
        config = Config(home=home, database_url=f"sqlite:///{tmp_path}/g.db")
        chosen = example_plugins if plugins is None else plugins
        return Engine(config, plugins=[*chosen, *extra], use_entry_points=False)

    return build


@pytest.fixture
def engine(build) -> Engine:
    return build()


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def example_with(old: str, new: str) -> str:
    text = EXAMPLE.read_text(encoding="utf-8")
    assert old in text
    return text.replace(old, new, 1)


class ShipsExample:
    """A plugin that ships the issue's example workflow file."""

    name = "ships_example"

    def __init__(self, *paths: Path, name: str = "ships_example") -> None:
        self.paths = paths or (EXAMPLE,)
        self.name = name

    @hookimpl
    def register_workflows(self, register):
        for path in self.paths:
            register(path)


# -- the issue's example -------------------------------------------------------------------
def test_the_issue_example_passes_the_check(engine):
    assert check_workflow_file(EXAMPLE, engine) == []


def test_the_example_becomes_a_definition_with_states_and_transitions(engine):
    wf, problems = read_workflow(EXAMPLE, engine)
    assert problems == [] and isinstance(wf, WorkflowDef)
    assert (wf.name, wf.label, wf.labels) == (
        "expo_booking",
        "Expo booking",
        {"zh": "展位预订流程"},
    )
    assert (wf.entity, wf.field, wf.initial) == ("ExpoBooking", "status", "requested")
    assert list(wf.states) == ["requested", "confirmed", "waiting", "paid", "cancelled"]
    assert wf.triggers == ("confirm", "invoice", "pay", "cancel", "expire")


def test_a_definition_records_its_file_origin_and_version(engine):
    wf, _ = read_workflow(EXAMPLE, engine, origin="plugin expo")
    assert wf.source == str(EXAMPLE)
    assert wf.origin == "plugin expo"
    assert wf.version == hashlib.sha256(EXAMPLE.read_bytes()).hexdigest()[:12]


def test_state_options_are_read(engine):
    wf, _ = read_workflow(EXAMPLE, engine)
    confirmed, waiting, paid = (wf.states[s] for s in ("confirmed", "waiting", "paid"))
    assert confirmed.require == ("booth_m2",) and confirmed.probability == 0.6
    assert waiting.timeout.after_seconds == 7 * 86400 and waiting.timeout.trigger == "expire"
    assert paid.final and paid.outcome == "won"
    assert paid.on_enter == (
        ActionCall("notify", {"to": "owner", "template": "booking_paid"}, f"{EXAMPLE}:11"),
    )
    assert confirmed.where == f"{EXAMPLE}:9"


def test_transition_options_are_read(engine):
    wf, _ = read_workflow(EXAMPLE, engine)
    confirm, _, pay, cancel, _ = wf.transitions
    assert confirm.roles == ("admin",) and confirm.where == f"{EXAMPLE}:14"
    assert pay.conditions == (ConditionCall("example.amount_received", {}, f"{EXAMPLE}:16"),)
    assert cancel.sources == ("requested", "confirmed", "waiting")
    assert cancel.payload["reason"].type == "string" and cancel.payload["reason"].required
    assert cancel.actions[0].params == {"fields": {"cancel_reason": "payload.reason"}}


def test_transitions_from_a_state_are_listed(engine):
    wf, _ = read_workflow(EXAMPLE, engine)
    assert [t.trigger for t in wf.transitions_from("waiting")] == ["pay", "cancel", "expire"]


def test_star_source_means_every_non_final_state_except_dest(engine):
    wf, problems = read_workflow(FULL, engine)
    assert problems == []
    cancel = next(t for t in wf.transitions if t.trigger == "cancel")
    assert cancel.sources == ("requested", "confirmed", "waiting")


def test_every_key_of_the_format_is_accepted(engine):
    assert check_workflow_file(FULL, engine) == []


def test_a_condition_with_parameters_keeps_them(engine):
    wf, _ = read_workflow(FULL, engine)
    pay = next(t for t in wf.transitions if t.trigger == "pay")
    assert pay.conditions[0].name == "example.amount_received"
    assert pay.conditions[0].params == {"min": 100}


def test_a_timeout_may_run_actions_and_stay(engine):
    wf, _ = read_workflow(FULL, engine)
    timeout = wf.states["requested"].timeout
    assert timeout.trigger is None and timeout.after_seconds == 14 * 86400
    assert [a.name for a in timeout.actions] == ["notify"]


def test_renamed_maps_old_states_to_declared_ones(engine):
    wf, _ = read_workflow(FULL, engine)
    assert wf.renamed == {"pending": "waiting"}


# -- durations -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "seconds"),
    [("45s", 45), ("30m", 1800), ("12h", 43200), ("14d", 1209600), ("2w", 1209600)],
)
def test_durations_are_a_number_and_a_unit(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["7", 7, "7 days", "0d", "1.5h", "-1d", "", "d", True, None])
def test_other_durations_are_refused(text):
    with pytest.raises(ValueError, match="bad duration"):
        parse_duration(text)


# -- the corpus of bad files ---------------------------------------------------------------
def test_the_corpus_table_lists_every_bad_file():
    assert sorted(p.stem for p in BAD.glob("*.yaml")) == sorted(CORPUS)


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_each_bad_file_gives_its_error_at_its_line(engine, name):
    path = BAD / f"{name}.yaml"
    line, message = CORPUS[name]
    problems = check_workflow_file(path, engine)
    assert any(p.where == f"{path}:{line}" and message in p.message for p in problems), "\n".join(
        map(str, problems)
    )


@pytest.mark.parametrize("name", sorted(set(CORPUS) - SKIPPED_WHEN_LOADING))
def test_each_bad_file_installed_stops_start_up_and_loads_nothing(build, home, name):
    installed = home / "workflows" / f"{name}.yaml"
    shutil.copy(BAD / f"{name}.yaml", installed)
    line, message = CORPUS[name]
    with pytest.raises(ConfigError) as info:
        build()
    assert any(
        p.where == f"{installed}:{line}" and message in p.message for p in info.value.problems
    ), str(info.value)


def test_check_reports_every_problem_of_a_file_not_just_the_first(engine, tmp_path):
    text = example_with("roles: [admin]", "roles: [adminn]")
    text = text.replace("after: 7d", "after: 7 days").replace("outcome: won", "outcome: win")
    problems = check_workflow_file(write(tmp_path, "many.yaml", text), engine)
    assert [p.where.rsplit(":", 1)[1] for p in problems] == ["10", "11", "14"]


def test_a_python_tag_runs_nothing(engine, tmp_path, capfd):
    marker = tmp_path / "pwned"
    text = f'workflow: !!python/object/apply:os.system ["touch {marker}"]\n'
    problems = check_workflow_file(write(tmp_path, "tag.yaml", text), engine)
    assert "is not allowed" in problems[0].message
    assert not marker.exists()


def test_yes_and_no_stay_strings_so_a_bool_parameter_refuses_them(engine, tmp_path):
    path = BAD / "wrong_action_parameter_type.yaml"
    assert "unless_exists: yes" in path.read_text(encoding="utf-8")
    assert "must be a bool" in check_workflow_file(path, engine)[0].message


def test_roles_are_checked_against_the_admins_roles_file(build, home, tmp_path):
    write(home, "roles.yaml", "roles:\n  booth_clerk: {label: Booth clerk}\n")
    text = example_with("roles: [admin]", "roles: [booth_clerk]")
    assert check_workflow_file(write(tmp_path, "clerk.yaml", text), build()) == []


# -- built-in actions --------------------------------------------------------------------------
def check_text(engine, tmp_path, text: str) -> list[str]:
    return [p.message for p in check_workflow_file(write(tmp_path, "wf.yaml", text), engine)]


def test_payload_values_exist_only_in_a_transitions_actions(engine, tmp_path):
    text = example_with(
        "{action: notify, to: owner, template: booking_paid}",
        "{action: set, fields: {cancel_reason: payload.reason}}",
    )
    [message] = check_text(engine, tmp_path, text)
    assert "payload exists only in a transition's actions" in message


def test_now_needs_a_datetime_field(engine, tmp_path):
    text = example_with("cancel_reason: payload.reason", "starts_on: now")
    [message] = check_text(engine, tmp_path, text)
    assert "ExpoBooking.starts_on is a date field; now needs a datetime" in message


def test_actor_needs_a_ref_to_user(engine, tmp_path):
    text = example_with("cancel_reason: payload.reason", "title: actor")
    [message] = check_text(engine, tmp_path, text)
    assert "ExpoBooking.title cannot hold the actor" in message


def test_record_values_name_fields_of_the_bound_entity(engine, tmp_path):
    text = example_with("cancel_reason: payload.reason", "cancel_reason: record.titel")
    [message] = check_text(engine, tmp_path, text)
    assert "'record.titel': ExpoBooking has no field 'titel' (did you mean 'title'?)" in message


def test_create_needs_the_required_fields_of_its_entity(engine, tmp_path):
    text = example_with(
        "{action: set, fields: {cancel_reason: payload.reason}}",
        "{action: create, entity: QuoteLine, fields: {product: record.title}}",
    )
    [message] = check_text(engine, tmp_path, text)
    assert "QuoteLine needs value(s) for required field(s) quote, quantity, unit_price" in message


def test_assign_owner_needs_an_owned_entity(build, tmp_path, test_plugin):
    engine = build()
    text = (
        "workflow: fair_season\nentity: Fair\nfield: season\ninitial: spring\n"
        "states:\n  spring: {on_enter: [{action: assign_owner, to: actor}]}\n"
        "  autumn: {final: true}\n"
        "transitions:\n  - {trigger: turn, source: spring, dest: autumn}\n"
    )
    [message] = check_text(engine, tmp_path, text)
    assert "Fair has no owner (it is not `owned: true`)" in message


def test_notify_owner_needs_records_with_an_owner(engine, tmp_path):
    text = (
        "workflow: fair_season\nentity: Fair\nfield: season\ninitial: spring\n"
        "states:\n  spring: {}\n  autumn: {final: true}\n"
        "transitions:\n  - trigger: turn\n    source: spring\n    dest: autumn\n"
        "    actions: [{action: notify, to: owner, template: season_turned}]\n"
    )
    [message] = check_text(engine, tmp_path, text)
    assert "Fair records have no owner to notify" in message


def test_a_string_field_may_hold_the_states(engine, tmp_path):
    text = (
        "workflow: fair_city\nentity: Fair\nfield: city\ninitial: planned\n"
        "states:\n  planned: {}\n  held: {final: true}\n"
        "transitions:\n  - {trigger: hold, source: planned, dest: held}\n"
    )
    assert check_text(engine, tmp_path, text) == []


# -- parameter schemas of plugin actions and conditions ---------------------------------------
def test_a_plugin_action_parameter_of_the_wrong_type_is_refused(engine, tmp_path):
    text = example_with(
        "{action: set, fields: {cancel_reason: payload.reason}}",
        "{action: example.send_invoice, template: invoice, copies: two}",
    )
    [message] = check_text(engine, tmp_path, text)
    assert "action example.send_invoice: parameter 'copies' must be a int" in message


def test_an_action_registered_without_a_schema_takes_no_parameters(engine, tmp_path):
    text = example_with(
        "{action: set, fields: {cancel_reason: payload.reason}}", "{action: example.log, level: 1}"
    )
    [message] = check_text(engine, tmp_path, text)
    assert "action example.log: unknown parameter 'level' (takes no parameters)" in message


class BadSchema:
    name = "bad_schema"

    @hookimpl
    def register_actions(self, register):
        register("bad_schema.act", print, params={"to": {"type": "address"}})


def test_a_plugin_action_with_a_bad_schema_stops_start_up(build):
    with pytest.raises(ConfigError, match="plugin bad_schema: action 'bad_schema.act'"):
        build(BadSchema())


class ShadowsSet:
    name = "shadows_set"

    @hookimpl
    def register_actions(self, register):
        register("set", print)


def test_a_plugin_may_not_register_a_built_in_action_name(build):
    with pytest.raises(ConfigError, match="action 'set' is built in"):
        build(ShadowsSet())


# -- loading ---------------------------------------------------------------------------------
def own_notices(notices):
    """The notices about the test's workflows: the shipped sales_pipeline is skipped with
    a notice whenever the sales plugin is not loaded."""
    return [n for n in notices if "sales_pipeline" not in n]


def test_the_engine_loads_plugin_workflows_with_their_origin(build):
    engine = build(ShipsExample())
    wf = engine.workflows["expo_booking"]
    assert wf.origin == "plugin ships_example" and wf.source == str(EXAMPLE)
    assert own_notices(engine.workflow_notices) == []


def test_the_engine_loads_admin_workflows(build, home):
    shutil.copy(EXAMPLE, home / "workflows" / "booking.yaml")
    assert build().workflows["expo_booking"].origin == "admin"


def test_an_admin_workflow_replaces_a_shipped_one_of_the_same_name(build, home):
    admin = home / "workflows" / "booking.yaml"
    shutil.copy(FULL, admin)
    engine = build(ShipsExample())
    assert engine.workflows["expo_booking"].source == str(admin)
    assert len(engine.workflows["expo_booking"].states) == 6
    assert any("replaces the one of plugin ships_example" in n for n in engine.workflow_notices)


def test_a_replaced_workflow_with_problems_does_not_stop_start_up(build, home):
    shutil.copy(EXAMPLE, home / "workflows" / "booking.yaml")
    engine = build(ShipsExample(BAD / "unknown_role.yaml"))
    assert engine.workflows["expo_booking"].origin == "admin"


def test_two_plugin_workflows_with_one_name_are_an_error_naming_both_files(build):
    with pytest.raises(ConfigError) as info:
        build(ShipsExample(EXAMPLE, FULL))
    assert f"defined twice: in {EXAMPLE} and in {FULL}" in str(info.value)


def test_two_admin_workflows_with_one_name_are_an_error(build, home):
    shutil.copy(EXAMPLE, home / "workflows" / "a.yaml")
    shutil.copy(EXAMPLE, home / "workflows" / "b.yaml")
    with pytest.raises(ConfigError, match="workflow expo_booking is defined twice"):
        build()


def test_two_workflows_binding_one_field_are_an_error(build, home):
    shutil.copy(EXAMPLE, home / "workflows" / "a.yaml")
    text = EXAMPLE.read_text(encoding="utf-8").replace("expo_booking ", "booth_booking")
    write(home / "workflows", "b.yaml", text)
    with pytest.raises(ConfigError) as info:
        build()
    assert info.value.where == f"{home / 'workflows' / 'b.yaml'}:5"
    assert "ExpoBooking.status is bound by two workflows: expo_booking" in str(info.value)


def test_a_workflow_whose_entity_is_not_loaded_is_skipped_with_a_notice(build, test_plugin):
    engine = build(ShipsExample(), plugins=[test_plugin("example_actions")])
    assert engine.workflows == {}
    [notice] = own_notices(engine.workflow_notices)
    assert "expo_booking" in notice and "ExpoBooking is not loaded" in notice


def test_load_workflows_returns_the_workflows_and_notices(build, home):
    shutil.copy(EXAMPLE, home / "workflows" / "booking.yaml")
    found = load_workflows(build())
    assert list(found.workflows) == ["expo_booking"] and own_notices(found.notices) == []


def test_check_reports_a_file_binding_a_field_another_loaded_workflow_binds(build, tmp_path):
    engine = build(ShipsExample())
    text = EXAMPLE.read_text(encoding="utf-8").replace("expo_booking ", "booth_booking")
    problems = check_workflow_file(write(tmp_path, "b.yaml", text), engine)
    assert [str(p) for p in problems] == [
        f"{tmp_path / 'b.yaml'}:5: ExpoBooking.status is already bound by workflow expo_booking"
        f" ({EXAMPLE})"
    ]


# -- diagrams ----------------------------------------------------------------------------------
def test_mermaid_draws_states_transitions_start_and_ends(engine):
    wf, _ = read_workflow(EXAMPLE, engine)
    text = to_mermaid(wf)
    assert text.startswith("stateDiagram-v2\n")
    assert '    state "Waiting for payment" as waiting\n' in text
    assert "    [*] --> requested\n" in text
    assert "    confirmed --> cancelled : cancel\n" in text
    assert "    waiting --> cancelled : expire (after 7d)\n" in text
    assert "    paid --> [*]\n" in text


def test_dot_draws_final_states_with_a_double_border(engine):
    wf, _ = read_workflow(EXAMPLE, engine)
    text = to_dot(wf)
    assert text.startswith('digraph "expo_booking" {')
    assert '"paid" [label="Paid", peripheries=2];' in text
    assert '"requested" -> "confirmed" [label="confirm"];' in text


def test_a_timeout_that_stays_is_drawn_as_a_loop(engine):
    wf, _ = read_workflow(FULL, engine)
    assert "    requested --> requested : after 2w\n" in to_mermaid(wf)


# -- the command line --------------------------------------------------------------------------
def invoke(engine: Engine, *args: str):
    return CliRunner().invoke(cli, ["workflow", *args], obj=engine)


def test_workflow_check_accepts_the_example_with_a_summary_line(engine):
    result = invoke(engine, "check", str(EXAMPLE))
    assert result.exit_code == 0, result.output
    assert result.output == (
        f"{EXAMPLE}: ok: workflow expo_booking on ExpoBooking.status, 5 states, 5 transitions\n"
    )


def test_workflow_check_prints_every_problem_of_every_file_and_exits_1(engine):
    files = [BAD / "unknown_role.yaml", BAD / "bad_duration.yaml"]
    result = invoke(engine, "check", *map(str, files))
    assert result.exit_code == 1
    assert f"{files[0]}:15: transition confirm: unknown role 'adminn'" in result.output
    assert f"{files[1]}:11: state waiting: timeout: bad duration '7 days'" in result.output


def test_workflow_list_shows_loaded_workflows_source_and_states(build):
    result = invoke(build(ShipsExample()), "list")
    assert result.exit_code == 0, result.output
    assert "expo_booking" in result.output and "ExpoBooking.status" in result.output
    assert "requested" in result.output and "plugin ships_example" in result.output


def test_workflow_graph_prints_mermaid_or_dot(build):
    engine = build(ShipsExample())
    wf = engine.workflows["expo_booking"]
    assert invoke(engine, "graph", "expo_booking").output == to_mermaid(wf)
    assert invoke(engine, "graph", "expo_booking", "--format", "dot").output == to_dot(wf)


def test_workflow_graph_of_an_unknown_name_lists_the_loaded_ones(build):
    result = invoke(build(ShipsExample()), "graph", "sales")
    assert result.exit_code == 1
    assert "there is no loaded workflow 'sales' (loaded: expo_booking)" in result.output


ENTITIES = """\
entities:
  - name: Fair
    fields:
      name: {type: string, required: true}
  - name: ExpoBooking
    owned: true
    fields:
      title: {type: string, required: true}
      booth_m2: {type: decimal, min: 0}
      fair: {type: ref, to: Fair, required: true}
      cancel_reason: {type: string, max_length: 200}
      status: {type: enum, choices: [requested, confirmed, waiting, paid, cancelled]}
"""


@pytest.fixture
def guanxi(home: Path, tmp_path: Path):
    """Run the installed ``guanxi`` console script with entities from the admin home."""
    (home / "entities").mkdir(exist_ok=True)
    write(home / "entities", "expo.yaml", ENTITIES)

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        env = {
            **os.environ,
            "GUANXI_HOME": str(home),
            "GUANXI_DATABASE_URL": f"sqlite:///{tmp_path}/g.db",
            "GUANXI_PLUGINS": "",
            "COLUMNS": "200",
        }
        return subprocess.run(
            [GUANXI, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
        )

    return run


def test_the_console_script_checks_a_good_file(guanxi, tmp_path):
    path = write(
        tmp_path, "booking.yaml", example_with(", conditions: [example.amount_received]", "")
    )
    result = guanxi("workflow", "check", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ok: workflow expo_booking on ExpoBooking.status, 5 states" in result.stdout


def test_the_console_script_refuses_a_condition_no_plugin_registers(guanxi):
    result = guanxi("workflow", "check", str(EXAMPLE))
    assert result.returncode == 1
    assert f"{EXAMPLE}:16: transition pay: unknown condition 'example.amount_received'" in (
        result.stdout
    )


def test_the_console_script_lists_and_draws_installed_workflows(guanxi, home):
    text = example_with(", conditions: [example.amount_received]", "")
    write(home / "workflows", "booking.yaml", text)
    listed = guanxi("workflow", "list")
    assert listed.returncode == 0, listed.stderr
    assert "expo_booking" in listed.stdout and "admin" in listed.stdout
    drawn = guanxi("workflow", "graph", "expo_booking")
    assert drawn.stdout.startswith("stateDiagram-v2")


def test_check_reports_a_broken_installation_line_by_line(guanxi, home):
    installed = home / "workflows" / "broken.yaml"
    shutil.copy(BAD / "unknown_role.yaml", installed)
    result = guanxi("workflow", "check", str(EXAMPLE))
    assert result.returncode == 1
    assert f"{installed}:15: transition confirm: unknown role 'adminn'" in result.stdout
    assert "the installation does not load" in result.stderr


# -- the reference keeps up with the code ------------------------------------------------------
DOCS = Path(__file__).parents[1] / "docs" / "workflows.md"


def test_every_key_scope_and_built_in_action_is_documented():
    from guanxi.engine import roles, workflow_defs

    text = DOCS.read_text(encoding="utf-8")
    names = [
        *workflow_defs.WORKFLOW_KEYS,
        *workflow_defs.STATE_KEYS,
        *workflow_defs.TRANSITION_KEYS,
        *workflow_defs.TIMEOUT_KEYS,
        *workflow_defs.PARAM_TYPES,
        *roles.ROLE_KEYS,
        *roles.SCOPES,
        *roles.OPERATIONS,
        *workflow_defs.BUILTIN_ACTIONS,
        *(p for params in workflow_defs.BUILTIN_ACTIONS.values() for p in params),
    ]
    missing = sorted(n for n in names if f"`{n}`" not in text)
    missing += [a for a in workflow_defs.BUILTIN_ACTIONS if f"### `{a}`" not in text]
    assert not missing, f"docs/workflows.md does not document: {', '.join(missing)}"


def test_the_workflow_examples_in_the_reference_pass_the_check(engine, tmp_path):
    text = DOCS.read_text(encoding="utf-8")
    blocks = [b for b in re.findall(r"^```yaml\n(.*?)^```", text, re.M | re.S) if "workflow:" in b]
    assert blocks
    for index, block in enumerate(blocks):
        assert check_workflow_file(write(tmp_path, f"doc{index}.yaml", block), engine) == []
