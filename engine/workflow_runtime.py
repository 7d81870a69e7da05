"""Running workflows: one shared ``transitions`` machine per workflow, one transaction
per fired transition.

The engine checks roles, conditions, ``unless``, required fields and the payload itself,
collecting every failure, before the machine moves a light proxy of the record; then the
new state, the version bump, the actions, the history event, the timers and the outbox
messages are written in the same transaction, or none of them are.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from transitions import Machine

from .actor import SYSTEM, Actor
from .errors import (
    BusyError,
    ConfigError,
    ConflictError,
    FieldProblem,
    PermissionDenied,
    TransitionValuesError,
    WorkflowError,
)
from .idempotency import request_hash
from .records import Record, to_json
from .validation import coerce, in_range

if TYPE_CHECKING:  # pragma: no cover
    from .engine import Engine


@dataclass(frozen=True)
class TransitionResult:
    """What ``fire_transition`` did: the new state, the one before, the history event."""

    state: str
    previous_state: str
    event: dict[str, Any]
    record: Record | None = None


@dataclass(frozen=True)
class AvailableTransition:
    """One trigger from the record's current state, and whether the actor may fire it now."""

    trigger: str
    label: str
    dest: str
    allowed: bool
    reasons: tuple[str, ...] = ()


@dataclass
class ActionContext:
    """What an action or condition function receives (besides its parameters)."""

    engine: Engine
    workflow: str
    entity: str
    record: Record
    actor: Actor
    payload: Mapping[str, Any]
    trigger: str | None
    from_state: str | None
    to_state: str | None
    extra: dict[str, Any] = field(default_factory=dict)


def on_behalf_of(actor: Actor) -> Actor:
    """The system acting for ``actor``: passes permission checks, audited under their name."""
    return Actor(
        id=actor.id,
        username=actor.username,
        roles=actor.roles,
        team_id=actor.team_id,
        team_ids=actor.team_ids,
        is_system=True,
    )


#: Attempts at a transition while the database reports itself busy.
BUSY_RETRIES = 3


class WorkflowRuntime:
    """Fires transitions and timers for the workflows of one engine."""

    def __init__(self, engine: Engine, workflows: Mapping[str, Any]) -> None:
        self.engine = engine
        self.workflows = dict(workflows)
        self.by_entity: dict[str, Any] = {}
        for wf in self.workflows.values():
            other = self.by_entity.setdefault(wf.entity, wf)
            if other is not wf:
                raise ConfigError(
                    f"{wf.entity} is bound by two workflows, {other.name} ({other.source}) and "
                    f"{wf.name} ({wf.source}): an entity follows one workflow",
                    where=wf.source,
                )
        # One machine per workflow shared by every record: records are never added as
        # models, so memory does not grow with the number of records.
        self.machines: dict[str, Machine] = {
            wf.name: Machine(
                model=None,
                states=list(wf.states),
                transitions=[
                    {"trigger": t.trigger, "source": list(t.sources), "dest": t.dest}
                    for t in wf.transitions
                ],
                initial=wf.initial,
                auto_transitions=False,
                ignore_invalid_triggers=False,
            )
            for wf in self.workflows.values()
        }

    # -- lookups ------------------------------------------------------------------------
    def workflow_for(self, entity: str) -> Any:
        wf = self.by_entity.get(entity)
        if wf is None:
            raise WorkflowError(f"{entity} is not bound to a workflow")
        return wf

    def state_field(self, entity: str) -> str | None:
        wf = self.by_entity.get(entity)
        return wf.field if wf else None

    # -- start-up -------------------------------------------------------------------------
    def reconcile_states(self) -> list[str]:
        """Make stored states agree with the loaded workflows; return what was done.

        Records in a state a workflow no longer has move to the state its ``renamed`` maps
        them to; records with no state yet (a workflow newly bound to an entity with data)
        enter the initial state. Any other unknown state stops start-up naming each state
        and its record count, changing nothing.
        """
        done: list[str] = []
        with self.engine.records.transaction(write=True):
            for wf in self.workflows.values():
                table = self.engine.registry[wf.entity].table
                rows = self.engine.db.select(
                    f'SELECT "{wf.field}", COUNT(*) FROM "{table}" GROUP BY "{wf.field}"'
                )
                stray = {state: n for state, n in rows if state not in wf.states}
                unmapped = {s: n for s, n in stray.items() if s is not None and s not in wf.renamed}
                if unmapped:
                    raise ConfigError(
                        f"workflow {wf.name} has no state "
                        + ", ".join(f"{s!r} ({n} record(s))" for s, n in sorted(unmapped.items()))
                        + f" any more; map each to a state under `renamed:` in {wf.source}",
                        where=wf.source,
                    )
                for old, count in stray.items():
                    new = wf.initial if old is None else wf.renamed[old]
                    self._move_all(wf, old, new)
                    done.append(f"{wf.entity}: {count} record(s) moved from {old} to {new}")
        return done

    def _move_all(self, wf: Any, old: str | None, new: str) -> None:
        cls = self.engine.classes[wf.entity]
        query = cls.select().filter(f"lambda x: x.{wf.field} == s", {}, {"s": old})
        for obj in query:
            setattr(obj, wf.field, new)
            obj.version += 1
            self._history(wf, obj.id, None, old, new, SYSTEM, {"renamed": old or "(none)"})
            if old is None:
                self._start_timers(wf, obj.id, new)

    # -- creation -----------------------------------------------------------------------
    def record_created(self, entity: str, obj: Any, actor: Actor) -> None:
        """Put a new record of a bound entity in the initial state (inside its transaction)."""
        wf = self.by_entity.get(entity)
        if wf is None:
            return
        setattr(obj, wf.field, wf.initial)
        self._history(wf, obj.id, None, None, wf.initial, actor, None)
        self._start_timers(wf, obj.id, wf.initial)
        on_enter = wf.states[wf.initial].on_enter
        if on_enter:
            records = self.engine.records
            spec = records.spec(entity)
            ctx = ActionContext(
                self.engine,
                wf.name,
                entity,
                records._record(spec, obj),
                actor,
                {},
                None,
                None,
                wf.initial,
            )
            self._run_actions(wf, on_enter, ctx, on_behalf_of(actor))

    # -- firing ---------------------------------------------------------------------------
    def fire_transition(
        self,
        entity: str,
        record_id: Any,
        trigger: str,
        actor: Actor = SYSTEM,
        payload: Mapping[str, Any] | None = None,
        expected_version: int | None = None,
        idempotency_key: str | None = None,
    ) -> TransitionResult:
        """Fire ``trigger`` on one record in one transaction; see the module docstring.

        Raises NotFound (not readable), PermissionDenied (no update scope), WorkflowError
        (unknown trigger, role, conditions, payload, required fields;
        ``details['failures']`` lists them all), ValidationError (an idempotency key
        reused for another request), ConflictError (lost a race).
        """
        for attempt in range(BUSY_RETRIES):
            try:
                return self._fire(
                    entity,
                    record_id,
                    trigger,
                    actor,
                    payload,
                    expected_version,
                    idempotency_key,
                )
            except BusyError:
                # Nothing was written (the transaction rolled back): wait a little and
                # try again from the start, reading the record afresh.
                if attempt == BUSY_RETRIES - 1:
                    raise
                time.sleep(0.05 * (attempt + 1))
        raise AssertionError("unreachable")

    def _fire(
        self,
        entity: str,
        record_id: Any,
        trigger: str,
        actor: Actor,
        payload: Mapping[str, Any] | None,
        expected_version: int | None,
        idempotency_key: str | None,
    ) -> TransitionResult:
        records = self.engine.records
        wf = self.workflow_for(entity)
        spec = records.spec(entity)
        payload = dict(payload or {})
        request = request_hash(entity, record_id, trigger, payload, expected_version)
        store = self.engine.idempotency
        with records.transaction(write=True):
            if idempotency_key:
                earlier = store.remembered(actor, "fire_transition", idempotency_key, request)
                if earlier is not None:
                    return TransitionResult(**earlier)
            obj = records._load(spec, record_id, actor, deleted=False, lock=True)
            if expected_version is not None and obj.version != expected_version:
                raise ConflictError(
                    f"{entity} #{obj.id} is at version {obj.version}, not {expected_version}: "
                    "someone changed it meanwhile; reload it and try again"
                )
            current = records._values(spec, obj)
            self.engine.policy.check_write(spec, actor, "update", current)
            state = current[wf.field]
            transition, clean_payload, failures, problems = self._choose(
                wf, state, trigger, current, actor, payload
            )
            if failures and problems:
                # only values stand in the way: a VALIDATION error naming the fields
                raise TransitionValuesError(
                    problems,
                    context=f"cannot {trigger} {entity} #{obj.id}",
                    failures=failures,
                    trigger=trigger,
                )
            if failures:
                raise WorkflowError(
                    f"cannot {trigger} {entity} #{obj.id}: " + "; ".join(failures),
                    failures=failures,
                    trigger=trigger,
                )
            proxy = SimpleNamespace(state=state)
            self.machines[wf.name].events[trigger].trigger(proxy)
            dest = proxy.state
            setattr(obj, wf.field, dest)
            obj.version = current["version"] + 1
            obj.updated_at = self.engine.now()
            records._audit(spec, obj.id, "transition", {wf.field: [state, dest]}, actor)
            acting = on_behalf_of(actor)
            ctx = ActionContext(
                self.engine,
                wf.name,
                entity,
                records._record(spec, obj),
                actor,
                clean_payload,
                trigger,
                state,
                dest,
            )
            self._run_actions(wf, wf.states[state].on_exit, ctx, acting)
            self._run_actions(wf, transition.actions, ctx, acting)
            self._run_actions(wf, wf.states[dest].on_enter, ctx, acting)
            event = self._history(wf, obj.id, trigger, state, dest, actor, clean_payload)
            if dest != state:  # a self-transition keeps the state's running timers
                self._cancel_timers(entity, obj.id)
                self._start_timers(wf, obj.id, dest)
            self.engine.hook.transition_fired(engine=self.engine, event=event)
            result = TransitionResult(
                state=dest, previous_state=state, event=event, record=records._record(spec, obj)
            )
            if idempotency_key:
                store.remember(
                    actor,
                    "fire_transition",
                    idempotency_key,
                    request,
                    {"state": dest, "previous_state": state, "event": event},
                )
            return result

    def _choose(
        self,
        wf: Any,
        state: str,
        trigger: str,
        current: Mapping[str, Any],
        actor: Actor,
        payload: dict,
    ) -> tuple[Any, dict[str, Any], list[str], list[FieldProblem]]:
        """The first transition for ``trigger`` from ``state`` whose guards pass; when none
        does, the first one with every reason it may not fire (and, of those, the ones that
        are values: required fields and payload)."""
        candidates = [t for t in wf.transitions if t.trigger == trigger and state in t.sources]
        if not candidates:
            self._unknown_trigger(wf, state, trigger)
        first: tuple[Any, dict[str, Any], list[str], list[FieldProblem]] | None = None
        for t in candidates:
            clean, failures, problems = self._check(wf, t, current, actor, payload)
            if not failures:
                return t, clean, failures, problems
            first = first or (t, clean, failures, problems)
        assert first is not None
        return first

    def _unknown_trigger(self, wf: Any, state: str, trigger: str) -> None:
        valid = sorted({t.trigger for t in wf.transitions if state in t.sources})
        raise WorkflowError(
            f"{trigger!r} is not a transition from state {state!r} of {wf.name}; "
            + (f"valid here: {', '.join(valid)}" if valid else "no transition leaves this state"),
            valid=valid,
        )

    def _check(
        self, wf: Any, t: Any, current: Mapping[str, Any], actor: Actor, payload: dict
    ) -> tuple[dict[str, Any], list[str], list[FieldProblem]]:
        """Every reason the transition may not fire now (empty when it may), and the
        problems with values among them (payload and required fields) as FieldProblems."""
        failures: list[str] = []
        if t.roles and not actor.is_admin and not (set(t.roles) & set(actor.roles)):
            failures.append(f"needs role {' or '.join(t.roles)}")
        clean: dict[str, Any] = {}
        problems: list[FieldProblem] = []
        for name, spec in t.payload.items():
            value = payload.get(name)
            try:
                value = coerce(spec, value, self.engine.config.currency)
            except ValueError as exc:
                problems.append(FieldProblem("payload", name, str(exc)))
                continue
            if value is None and spec.required:
                problems.append(FieldProblem("payload", name, "is required"))
            elif value is not None and (out_of_range := in_range(spec, value)):
                problems.append(FieldProblem("payload", name, out_of_range))
            clean[name] = value
        for name in payload:
            if name not in t.payload:
                problems.append(FieldProblem("payload", name, f"is not a payload of {t.trigger}"))
        failures.extend(f"payload.{p.field} {p.message}" for p in problems)
        record = Record(wf.entity, current)
        ctx = ActionContext(
            self.engine,
            wf.name,
            wf.entity,
            record,
            actor,
            clean,
            t.trigger,
            current[wf.field],
            t.dest,
        )
        for call in t.conditions:
            if not self._condition(call, ctx):
                failures.append(f"condition {call.name} failed")
        for call in t.unless:
            if self._condition(call, ctx):
                failures.append(f"unless {call.name} holds")
        guarded = len(failures) - len(problems)  # roles, conditions, unless
        missing = [f for f in wf.states[t.dest].require if current.get(f) in (None, "")]
        if missing:
            failures.append(f"missing required field(s) {', '.join(missing)}")
        problems.extend(FieldProblem(wf.entity, f, f"is required to {t.trigger}") for f in missing)
        # the problems count as values only when no role, condition or unless failed
        return clean, failures, problems if not guarded else []

    def _condition(self, call: Any, ctx: ActionContext) -> bool:
        condition = self.engine.conditions[call.name].value
        return bool(condition(ctx, **call.params))

    def available_transitions(
        self, entity: str, record_id: Any, actor: Actor = SYSTEM
    ) -> list[AvailableTransition]:
        """Every trigger from the record's current state, allowed now or not (and why)."""
        records = self.engine.records
        wf = self.workflow_for(entity)
        spec = records.spec(entity)
        with records.transaction():
            obj = records._load(spec, record_id, actor, deleted=False)
            current = records._values(spec, obj)
            try:
                self.engine.policy.check_write(spec, actor, "update", current)
                denied: list[str] = []
            except PermissionDenied as exc:
                denied = [str(exc)]
            out = []
            for t in wf.transitions:
                if current[wf.field] not in t.sources:
                    continue
                required_payload = {n: None for n, s in t.payload.items() if s.required}
                _, failures, _ = self._check(wf, t, current, actor, {})
                failures = [
                    f
                    for f in failures
                    if not any(f.startswith(f"payload.{n} ") for n in required_payload)
                ]
                reasons = tuple(denied + failures)
                out.append(AvailableTransition(t.trigger, t.label, t.dest, not reasons, reasons))
            return out

    # -- actions --------------------------------------------------------------------------
    def _run_actions(self, wf: Any, calls: Any, ctx: ActionContext, acting: Actor) -> None:
        for index, call in enumerate(calls):
            builtin = getattr(self, f"_action_{call.name}", None)
            if builtin is not None and call.name in BUILTIN_ACTIONS:
                builtin(wf, call.params, ctx, acting, index)
            else:
                self.engine.actions[call.name].value(ctx, **call.params)
            # later actions see what earlier ones wrote
            ctx.record = self.engine.records.get(ctx.entity, ctx.record.id, actor=SYSTEM)

    def _value(self, expression: Any, ctx: ActionContext) -> Any:
        if isinstance(expression, str):
            if expression.startswith("record."):
                return ctx.record[expression[len("record.") :]]
            if expression.startswith("payload."):
                return ctx.payload.get(expression[len("payload.") :])
            if expression == "actor":
                return ctx.actor.id
            if expression == "now":
                return self.engine.now()
        return expression

    def _action_set(
        self, wf: Any, params: dict, ctx: ActionContext, acting: Actor, _i: int
    ) -> None:
        values = {name: self._value(expr, ctx) for name, expr in params["fields"].items()}
        self.engine.records.update(ctx.entity, ctx.record.id, values, actor=acting)

    def _action_create(
        self, wf: Any, params: dict, ctx: ActionContext, acting: Actor, _i: int
    ) -> None:
        entity = params["entity"]
        values = {name: self._value(expr, ctx) for name, expr in params.get("fields", {}).items()}
        if params.get("unless_exists"):
            target = self.engine.registry[entity]
            keys = {
                k: v
                for k, v in values.items()
                if k in target.fields and target.fields[k].type == "ref"
            } or values
            flt = {
                k: ({"id": {"eq": v}} if target.fields[k].type == "ref" else {"eq": v})
                for k, v in keys.items()
            }
            if self.engine.records.list(entity, filter=flt, first=1).total_count:
                return
        self.engine.records.create(entity, values, actor=acting)

    def _action_assign_owner(
        self, wf: Any, params: dict, ctx: ActionContext, acting: Actor, _i: int
    ) -> None:
        to = params["to"]
        if to == "actor":
            owner = ctx.actor.id
        elif to.startswith("user:"):
            owner = self._user_id(to[len("user:") :])
        else:
            owner = ctx.record[to]
        self.engine.records.update(ctx.entity, ctx.record.id, {"owner": owner}, actor=acting)

    def _action_notify(
        self, wf: Any, params: dict, ctx: ActionContext, acting: Actor, index: int
    ) -> None:
        to = params["to"]
        if to == "owner":
            users = [ctx.record.get("owner")]
        elif to == "actor":
            users = [ctx.actor.id]
        elif to.startswith("user:"):
            users = [self._user_id(to[len("user:") :])]
        else:  # role:<name>
            role = to[len("role:") :]
            users = [
                u.id
                for u in self.engine.records.scoped_query("User")
                if role in (u.roles or []) and u.active is not False
            ]
        for user in users:
            if user is None:
                continue
            self.enqueue(
                "inbox",
                key=f"{wf.name}:{ctx.entity}:{ctx.record.id}:{ctx.record.version}:{index}:{user}",
                payload={
                    "user": user,
                    "template": params["template"],
                    "entity": ctx.entity,
                    "record_id": ctx.record.id,
                    "workflow": wf.name,
                    "trigger": ctx.trigger,
                    "state": ctx.to_state,
                },
            )

    def _user_id(self, username: str) -> int:
        page = self.engine.records.list("User", filter={"username": {"eq": username}}, first=1)
        if not page.records:
            raise WorkflowError(f"there is no user {username!r}")
        return page.records[0].id

    # -- history, timers, outbox, idempotency ------------------------------------------------
    def _history(
        self,
        wf: Any,
        record_id: int,
        trigger: str | None,
        from_state: str | None,
        to_state: str,
        actor: Actor,
        payload: Mapping[str, Any] | None,
    ) -> dict[str, Any]:
        now = self.engine.now()
        row = self.engine.classes["GxWorkflowEvent"](
            workflow=wf.name,
            workflow_version=wf.version,
            entity=wf.entity,
            record_id=record_id,
            trigger=trigger,
            from_state=from_state,
            to_state=to_state,
            actor_id=actor.id,
            actor=actor.username,
            at=now,
            payload={k: to_json(v) for k, v in (payload or {}).items()} or None,
        )
        row.flush()
        return {
            "id": row.id,
            "workflow": wf.name,
            "entity": wf.entity,
            "record_id": record_id,
            "trigger": trigger,
            "from_state": from_state,
            "to_state": to_state,
            "actor_id": actor.id,
            "actor": actor.username,
            "at": now.isoformat(),
            "payload": row.payload,
        }

    def history(
        self, entity: str, record_id: int, actor: Actor | None = None
    ) -> list[dict[str, Any]]:
        """The workflow events of one record, oldest first.

        With ``actor``, each payload shows only what they may see (:meth:`visible_payload`);
        whether they may read the record at all is the caller's check.
        """
        events = self.engine.classes["GxWorkflowEvent"]
        with self.engine.records.transaction():
            rows = (
                events.select()
                .filter(
                    "lambda e: e.entity == n and e.record_id == r",
                    {},
                    {"n": entity, "r": record_id},
                )
                .order_by("lambda e: e.id", {}, {})
            )
            found = [
                {
                    "trigger": e.trigger,
                    "from_state": e.from_state,
                    "to_state": e.to_state,
                    "actor": e.actor,
                    "actor_id": e.actor_id,
                    "at": e.at,
                    "payload": e.payload,
                    "workflow": e.workflow,
                    "workflow_version": e.workflow_version,
                }
                for e in rows
            ]
        if actor is not None:
            for event in found:
                event["payload"] = self.visible_payload(
                    entity, event["trigger"], event["payload"], actor
                )
        return found

    def visible_payload(
        self, entity: str, trigger: str | None, payload: Mapping[str, Any] | None, actor: Actor
    ) -> dict[str, Any] | None:
        """``payload`` of a ``trigger`` event on ``entity`` without the keys that would show
        ``actor`` a field hidden from them: a key named like such a field, or one an action
        of the transition copies into one (``set: {cancel_reason: payload.reason}``, also
        into a created record). None when nothing is left."""
        if not payload:
            return None
        policy = self.engine.policy
        registry = self.engine.registry

        def hidden(target: str, name: str) -> bool:
            spec = registry.get(target)
            return spec is not None and not policy.readable_field(spec, actor, name)

        keys = {name for name in payload if hidden(entity, name)}
        wf = self.by_entity.get(entity)
        for t in wf.transitions if wf is not None else ():
            if t.trigger == trigger:
                copies = _payload_copies(wf, t)
                keys.update(key for target, name, key in copies if hidden(target, name))
        shown = {k: v for k, v in payload.items() if k not in keys}
        return shown or None

    def _start_timers(self, wf: Any, record_id: int, state: str) -> None:
        timeout = wf.states[state].timeout
        if timeout is None:
            return
        self.engine.classes["GxTimer"](
            workflow=wf.name,
            entity=wf.entity,
            record_id=record_id,
            state=state,
            due_at=self.engine.now() + timedelta(seconds=timeout.after_seconds),
        )

    def _cancel_timers(self, entity: str, record_id: int) -> None:
        timers = self.engine.classes["GxTimer"]
        pending = timers.select().filter(
            "lambda t: t.entity == n and t.record_id == r and t.status == 'pending'",
            {},
            {"n": entity, "r": record_id},
        )
        for timer in pending:
            timer.status = "cancelled"
            timer.done_at = self.engine.now()
            timer.note = "the record left the state"

    def enqueue(self, channel: str, key: str, payload: Mapping[str, Any]) -> None:
        """Queue a message for delivery after commit (inside the caller's transaction).

        The same key twice is one message: delivery is at least once, keyed for the
        receiver to drop repeats.
        """
        outbox = self.engine.classes["GxOutbox"]
        if outbox.get(key=key) is not None:
            return
        now = self.engine.now()
        outbox(channel=channel, key=key, payload=dict(payload), next_attempt_at=now, created_at=now)

    # -- worker ---------------------------------------------------------------------------
    def fire_due_timers(self, now: datetime | None = None, limit: int = 100) -> int:
        """Fire every timer due by ``now``, each in its own transaction; return how many.

        A timer is claimed and marked done in the transaction of its effect, so it fires
        exactly once; on PostgreSQL concurrent workers skip rows another one holds.
        """
        timers = self.engine.classes["GxTimer"]
        now = now or self.engine.now()
        fired = 0
        postgres = self.engine.url.provider == "postgres"
        for _ in range(limit):
            timer_id = None
            try:
                with self.engine.records.transaction(write=True):
                    query = (
                        timers.select()
                        .filter(
                            "lambda t: t.status == 'pending' and t.due_at <= now", {}, {"now": now}
                        )
                        .order_by("lambda t: (t.due_at, t.id)", {}, {})
                    )
                    if postgres:
                        query = query.for_update(skip_locked=True)
                    timer = query.first()
                    if timer is None:
                        break
                    timer_id = timer.id
                    self._fire_timer(timer)
                fired += 1
            except ConflictError:
                continue  # another worker got there first; look for the next due timer
            except WorkflowError as exc:  # the trigger is no longer allowed: rolled back
                assert timer_id is not None
                self._timer_done(timer_id, "skipped", exc, history=True)
            except Exception as exc:  # the effect failed and rolled back: keep the reason
                if timer_id is None:
                    raise
                self._timer_done(timer_id, "failed", exc, history=False)
        return fired

    def _timer_done(self, timer_id: int, status: str, exc: Exception, *, history: bool) -> None:
        """Record why a timer's effect did not happen (its own transaction), so the timer
        is neither retried forever nor silently lost; a skip is written to the history."""
        reason = f"{exc}"[:500] if history else f"{type(exc).__name__}: {exc}"[:500]
        with self.engine.records.transaction(write=True):
            timer = self.engine.classes["GxTimer"][timer_id]
            if timer.status != "pending":
                return
            timer.status, timer.done_at, timer.note = status, self.engine.now(), reason
            wf = self.workflows.get(timer.workflow)
            if history and wf is not None:
                trigger = wf.states[timer.state].timeout.trigger
                self._history(
                    wf, timer.record_id, trigger, timer.state, timer.state, SYSTEM, {status: reason}
                )

    def _fire_timer(self, timer: Any) -> None:
        wf = self.workflows.get(timer.workflow)
        now = self.engine.now()
        timer.done_at = now
        if wf is None:
            timer.status, timer.note = "skipped", f"workflow {timer.workflow} is not loaded"
            return
        records = self.engine.records
        spec = records.spec(wf.entity)
        obj = self.engine.classes[wf.entity].get(id=timer.record_id)
        if obj is None or obj.deleted_at is not None or getattr(obj, wf.field) != timer.state:
            timer.status, timer.note = "cancelled", "the record left the state"
            return
        timeout = wf.states[timer.state].timeout
        if timeout.trigger:
            # A refusal (or a failing action) propagates: the caller rolls this whole
            # transaction back, then records the skip in a transaction of its own.
            self.fire_transition(wf.entity, timer.record_id, timeout.trigger, actor=SYSTEM)
        else:
            ctx = ActionContext(
                self.engine,
                wf.name,
                wf.entity,
                records._record(spec, obj),
                SYSTEM,
                {},
                None,
                timer.state,
                timer.state,
            )
            self._run_actions(wf, timeout.actions, ctx, SYSTEM)
        timer.status, timer.note = "done", None


BUILTIN_ACTIONS = frozenset({"set", "create", "assign_owner", "notify"})


def _payload_copies(wf: Any, t: Any) -> list[tuple[str, str, str]]:
    """(entity, field, payload key) of every field the actions of firing ``t`` set from
    the payload: ``set`` on the record, ``create`` of another record."""
    calls = [*t.actions, *wf.states[t.dest].on_enter]
    calls += [call for source in t.sources for call in wf.states[source].on_exit]
    copies = []
    for call in calls:
        target = wf.entity if call.name == "set" else call.params.get("entity")
        if call.name not in ("set", "create") or not target:
            continue
        for name, expr in (call.params.get("fields") or {}).items():
            if isinstance(expr, str) and expr.startswith("payload."):
                copies.append((target, name, expr[len("payload.") :]))
    return copies
