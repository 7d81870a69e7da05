"""The shared pool (公海) and hand-over: who works which customer, and how that changes.

Customers without an owner form the shared pool. A customer manager reads pool customers
and their contacts - with phones and e-mail addresses masked until they claim the customer
(``mask_values``; the masked fields cannot be filtered or ordered on by them either,
``masked_fields``) - and claims them within a cap, not soon again after giving one up.
An owner (or their supervisor, or an admin) releases a customer back to the pool with a
reason; a supervisor hands customers to a colleague of their teams with their open
opportunities and tasks, or everything a user works on at once (``transferAll``), which
deactivating or deleting a user requires. A periodic rule returns customers nobody has
worked for a while, warning their owner first. Every move is audited (``claim``,
``release``, ``transfer``, ``return``, with the reason) besides the owner change itself.

``lookupCustomer(name, phone)`` answers every signed-in user whether a customer with that
name or phone exists anywhere, and who works it - nothing else about it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Optional

import strawberry
from pony.orm import exists, select

from guanxi.engine import (
    SYSTEM,
    Actor,
    ConflictError,
    FieldProblem,
    LimitExceeded,
    NotFound,
    PermissionDenied,
    Record,
    RecordEvent,
    ValidationError,
)
from guanxi.graphql.context import Context, call_engine, in_thread

from .pipeline import acting_for

# -- settings (docs/sales.md "The pool and hand-over") ----------------------------------------
CLAIM_CAP = "GUANXI_SALES_CLAIM_CAP"
RECLAIM_COOLDOWN_DAYS = "GUANXI_SALES_RECLAIM_COOLDOWN_DAYS"
POOL_RETURN_DAYS = "GUANXI_SALES_POOL_RETURN_DAYS"
POOL_NOTICE_DAYS = "GUANXI_SALES_POOL_NOTICE_DAYS"
DEFAULTS = {CLAIM_CAP: 200, RECLAIM_COOLDOWN_DAYS: 30, POOL_RETURN_DAYS: 90, POOL_NOTICE_DAYS: 7}

#: Roles (besides admin) that claim customers from the pool.
CLAIMING_ROLES = frozenset({"customer_manager", "sales_supervisor"})
#: Roles (besides admin) that hand customers over to someone else.
TRANSFERRING_ROLES = frozenset({"sales_supervisor"})
#: What pool readers see masked on pool records, per entity.
MASKED: Mapping[str, tuple[str, ...]] = {
    "Customer": ("phone",),
    "Contact": ("phone", "mobile", "email"),
}
#: Contract statuses a user still works on (handed over by transferAll).
LIVE_CONTRACT_STATUSES = ("draft", "active")
#: The periodic rule runs hourly and returns at most this many customers a run.
RETURN_INTERVAL_SECONDS = 3600
RETURN_BATCH = 1000
MAX_IDS = 1000
MAX_REASON = 500
NOTICE_TEMPLATE = "sales.pool_return_notice"
RETURNED_TEMPLATE = "sales.pool_returned"


def setting(engine: Any, name: str) -> int:
    return int(engine.config.setting(name, DEFAULTS[name]))


# -- masking ----------------------------------------------------------------------------------
def masks_pool_for(engine: Any, actor: Actor) -> bool:
    """Whether ``actor`` reads pool customers masked: they reach customers through the
    pool (``own_or_unowned``, ``team_or_unowned``) and no role of theirs reads every
    customer."""
    if actor.is_admin:
        return False
    scopes = {
        engine.role_defs[role].scope("Customer", "read")
        for role in actor.roles
        if role in engine.role_defs
    }
    return bool(scopes & {"own_or_unowned", "team_or_unowned"}) and "all" not in scopes


def masked_fields(engine: Any, actor: Actor, entity: str) -> tuple[str, ...] | None:
    if entity in MASKED and masks_pool_for(engine, actor):
        return MASKED[entity]
    return None


def mask_values(
    engine: Any, actor: Actor, entity: str, values: Mapping[str, Any]
) -> dict[str, Any] | None:
    fields = masked_fields(engine, actor, entity)
    if not fields or not _in_pool(engine, entity, values):
        return None
    shown = {}
    for name in fields:
        value = values.get(name)
        if value is not None:
            shown[name] = mask_email(value) if name == "email" else mask_phone(value)
    return shown


def _in_pool(engine: Any, entity: str, values: Mapping[str, Any]) -> bool:
    if entity == "Customer":
        return values.get("owner") is None
    customer_id = values.get("customer")
    if customer_id is None:
        return False
    # Read through the session's identity map rather than a query per contact: the contact
    # row made its customer a seed, and Pony loads every seed of a page in one query.
    customer = engine.classes["Customer"].get(id=customer_id)
    return customer is not None and customer.owner is None


def mask_phone(value: str) -> str:
    """``13800138000`` -> ``138****8000``; shorter numbers keep only their last digits."""
    text = str(value).strip()
    digits = "".join(c for c in text if c.isdigit())
    if digits.startswith("00"):
        digits, text = digits[2:], "+"
    if digits.startswith("86") and (text.startswith("+") or len(digits) > 11):
        digits = digits[2:]
    if len(digits) >= 11:
        return f"{digits[:3]}****{digits[-4:]}"
    if len(digits) >= 8:
        return f"****{digits[-4:]}"
    return "****"


def mask_email(value: str) -> str:
    """``zhang.wei@example.com`` -> ``z***@example.com``."""
    local, at, domain = str(value).strip().partition("@")
    if not at or not local or not domain:
        return "***"
    return f"{local[0]}***@{domain}"


# -- who may ----------------------------------------------------------------------------------
def _who(actor: Actor) -> str:
    return " / ".join(sorted(actor.roles)) or f"{actor.username} (no role)"


def _require_role(actor: Actor, roles: frozenset[str], doing: str) -> None:
    if actor.is_admin or roles & set(actor.roles):
        return
    needed = " or ".join(sorted(roles | {"admin"}))
    raise PermissionDenied(f"{_who(actor)} may not {doing}: that needs the role {needed}")


def _record_id(entity: str, value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise NotFound(f"{entity} {value!r} does not exist") from None


def _lock(engine: Any, entity: str, record_id: Any) -> Record:
    """The live record, its row held (``FOR UPDATE``) until the transaction ends."""
    rid = _record_id(entity, record_id)
    query = engine.records.scoped_query(entity).filter("lambda x: x.id == rid", {}, {"rid": rid})
    if query.for_update().first() is None:
        raise NotFound(f"{entity} #{rid} does not exist among live records")
    return engine.records.get(entity, rid)


def _user(engine: Any, user_id: Any, field: str) -> Record:
    """A live user by id, or VALIDATION naming the argument ``field``."""
    try:
        uid = int(user_id)
    except (TypeError, ValueError):
        uid = None
    page = engine.records.list("User", filter={"id": {"eq": uid}}, first=1) if uid else None
    if not page or not page.records:
        raise ValidationError(FieldProblem("User", field, f"there is no user #{user_id}"))
    return page.records[0]


def _name(user: Record) -> str:
    return user.get("display_name") or user.username


def _target(engine: Any, user_id: Any, actor: Actor) -> Record:
    """The user records are handed to: active and, unless an admin hands over, of the
    actor's team or one of its sub-teams."""
    user = _user(engine, user_id, "to_user_id")
    if not user.active:
        raise ValidationError(FieldProblem("User", "to_user_id", f"{user.username} is deactivated"))
    if not actor.is_admin and user.team not in actor.team_ids:
        raise ValidationError(
            FieldProblem(
                "User", "to_user_id", f"{user.username} is not in your team or its sub-teams"
            )
        )
    return user


def _check_manages(engine: Any, actor: Actor, customer: Record, doing: str) -> None:
    """The customer's owner, a supervisor of the owner's team (or a sub-team) and admins
    decide where a customer goes - not a member it is shared with."""
    if actor.is_admin or customer.owner == actor.id:
        return
    if TRANSFERRING_ROLES & set(actor.roles):
        owner = engine.records.get("User", customer.owner)
        if owner.team is not None and owner.team in actor.team_ids:
            return
    raise PermissionDenied(
        f"{_who(actor)} may not {doing} Customer #{customer.id} {customer.name!r}: only its "
        "owner, a supervisor of the owner's team and admins may"
    )


# -- what a user works on -------------------------------------------------------------------
def open_states(engine: Any) -> list[str]:
    """States of the Opportunity workflow without an outcome: the deal is still open."""
    workflow = engine.runtime.workflow_for("Opportunity")
    return [name for name, state in workflow.states.items() if state.outcome is None]


def _ids(query: Any) -> list[int]:
    return sorted(select(x.id for x in query))  # ids only, no objects to build


def _owned_by(engine: Any, entity: str, user_id: int) -> Any:
    return engine.records.scoped_query(entity).filter(
        "lambda x: x.owner is not None and x.owner.id == uid", {}, {"uid": user_id}
    )


def _open_opportunities(query: Any, engine: Any) -> Any:
    return query.filter("lambda x: x.stage in states", {}, {"states": open_states(engine)})


def _live_contracts(query: Any) -> Any:
    return query.filter("lambda x: x.status in live", {}, {"live": list(LIVE_CONTRACT_STATUSES)})


def _open_tasks(query: Any) -> Any:
    return query.filter("lambda x: x.done is None or x.done == False", {}, {})  # noqa: E712


@dataclass(frozen=True)
class Holdings:
    """What a user works on (or what a hand-over moved): record ids per kind."""

    customers: tuple[int, ...] = ()
    opportunities: tuple[int, ...] = ()
    contracts: tuple[int, ...] = ()
    tasks: tuple[int, ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.customers or self.opportunities or self.contracts or self.tasks)

    def describe(self) -> str:
        parts = [
            _count(len(self.customers), "customer"),
            _count(len(self.opportunities), "open opportunity", "open opportunities"),
            _count(len(self.contracts), "draft or active contract"),
            _count(len(self.tasks), "open task"),
        ]
        parts = [p for p in parts if p]
        return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def _count(n: int, one: str, many: str | None = None) -> str:
    if not n:
        return ""
    return f"1 {one}" if n == 1 else f"{n} {many or one + 's'}"


def holdings(engine: Any, user_id: int) -> Holdings:
    """The customers, open opportunities, draft or active contracts and open tasks that
    ``user_id`` owns: what :func:`transfer_all` hands over. Closed deals, finished
    contracts, done tasks and activities stay theirs, as history."""
    with engine.records.transaction():
        return Holdings(
            customers=tuple(_ids(_owned_by(engine, "Customer", user_id))),
            opportunities=tuple(
                _ids(_open_opportunities(_owned_by(engine, "Opportunity", user_id), engine))
            ),
            contracts=tuple(_ids(_live_contracts(_owned_by(engine, "Contract", user_id)))),
            tasks=tuple(_ids(_open_tasks(_owned_by(engine, "Task", user_id)))),
        )


def _hand(
    engine: Any,
    entity: str,
    record_id: int,
    to: int | None,
    actor: Actor,
    action: str,
    reason: str | None = None,
) -> None:
    """Give one record to user ``to`` (None: the pool), audited as ``action``."""
    before = engine.records.get(entity, record_id).owner
    engine.records.update(entity, record_id, {"owner": to}, actor=acting_for(actor))
    changes: dict[str, Any] = {"owner": [before, to]}
    if reason:
        changes["reason"] = reason
    engine.records.audit(entity, record_id, action, changes, actor=actor)


def _reason(reason: Any, *, required: bool) -> str | None:
    text = reason.strip() if isinstance(reason, str) else ""
    if not text:
        if required:
            raise ValidationError(
                FieldProblem("Customer", "reason", "is required: say why the customer is let go")
            )
        return None
    if len(text) > MAX_REASON:
        raise ValidationError(
            FieldProblem("Customer", "reason", f"must be at most {MAX_REASON} characters")
        )
    return text


# -- claim and release --------------------------------------------------------------------------
def claim(engine: Any, customer_id: Any, *, actor: Actor) -> Record:
    """Make ``actor`` the owner of a pool customer; the customer as they now see it.

    Refused (LIMIT_EXCEEDED) when they already own ``GUANXI_SALES_CLAIM_CAP`` customers or
    when the customer left them (release or return rule) less than
    ``GUANXI_SALES_RECLAIM_COOLDOWN_DAYS`` days ago; CONFLICT when it is not in the pool -
    of two managers claiming one customer at once, exactly one wins.
    """
    _require_role(actor, CLAIMING_ROLES, "claim customers from the shared pool")
    if actor.id is None:
        raise PermissionDenied("only a user can claim a customer")
    with engine.records.transaction(write=True):
        _lock(engine, "User", actor.id)  # one claim of a user at a time: the cap holds
        customer = _lock(engine, "Customer", customer_id)
        if customer.owner is not None:
            if customer.owner == actor.id:
                raise ConflictError(f"you already own Customer #{customer.id} {customer.name!r}")
            owner = _name(engine.records.get("User", customer.owner))
            raise ConflictError(
                f"Customer #{customer.id} {customer.name!r} is not in the shared pool: "
                f"{owner} owns it"
            )
        _check_cooldown(engine, customer, actor)
        _check_cap(engine, actor)
        _hand(engine, "Customer", customer.id, actor.id, actor, "claim")
    return engine.records.get("Customer", customer.id, actor=actor)


def _check_cap(engine: Any, actor: Actor) -> None:
    cap = setting(engine, CLAIM_CAP)
    if not cap:
        return
    owned = _owned_by(engine, "Customer", actor.id).count()
    if owned >= cap:
        raise LimitExceeded(
            f"you own {owned} customers, the most one may own by claiming ({CLAIM_CAP} = "
            f"{cap}); release or hand over some first"
        )


def _check_cooldown(engine: Any, customer: Record, actor: Actor) -> None:
    days = setting(engine, RECLAIM_COOLDOWN_DAYS)
    if not days:
        return
    since = engine.now() - timedelta(days=days)
    left = [
        event["at"]
        for event in engine.records.audit_trail("Customer", customer.id)
        if event["action"] in ("release", "return")
        and (event["changes"].get("owner") or [None])[0] == actor.id
        and event["at"] > since
    ]
    if left:
        until = max(left) + timedelta(days=days)
        raise LimitExceeded(
            f"Customer #{customer.id} {customer.name!r} left you on {max(left):%Y-%m-%d}; you "
            f"may claim it again from {until:%Y-%m-%d %H:%M} UTC ({RECLAIM_COOLDOWN_DAYS} = "
            f"{days})",
            retry_at=until,
        )


def release(engine: Any, customer_id: Any, reason: Any, *, actor: Actor) -> Record | None:
    """Put a customer back into the pool, saying why; the customer as ``actor`` now sees
    it (None when they do not read the pool).

    The actor must be able to change the customer (its owner, their supervisor, an
    admin). A customer with an open opportunity or an active contract stays: close them
    or hand the customer over instead.
    """
    text = _reason(reason, required=True)
    with engine.records.transaction(write=True):
        customer = _lock(engine, "Customer", customer_id)
        engine.records.get("Customer", customer.id, actor=actor)  # NotFound when invisible
        if customer.owner is None:
            raise ConflictError(
                f"Customer #{customer.id} {customer.name!r} is already in the shared pool"
            )
        _check_manages(engine, actor, customer, "release")
        ties = _ties(engine, customer.id)
        if ties:
            raise ConflictError(
                f"Customer #{customer.id} {customer.name!r} has {ties}; close them or hand "
                "the customer over (transferCustomers) instead of releasing it"
            )
        _hand(engine, "Customer", customer.id, None, actor, "release", text)
    try:
        return engine.records.get("Customer", customer.id, actor=actor)
    except NotFound:
        return None


def _ties(engine: Any, customer_id: int) -> str:
    """What keeps a customer out of the pool, in words ('' when nothing does)."""
    of = {"c": customer_id}
    opportunities = _open_opportunities(
        engine.records.scoped_query("Opportunity").filter("lambda x: x.customer.id == c", {}, of),
        engine,
    ).count()
    contracts = (
        engine.records.scoped_query("Contract")
        .filter("lambda x: x.customer.id == c and x.status == 'active'", {}, of)
        .count()
    )
    parts = [
        _count(opportunities, "open opportunity", "open opportunities"),
        _count(contracts, "active contract"),
    ]
    return " and ".join(p for p in parts if p)


# -- hand-over --------------------------------------------------------------------------------
def transfer_customers(
    engine: Any, customer_ids: Sequence[Any], to_user_id: Any, *, actor: Actor, reason: Any = None
) -> Holdings:
    """Hand customers to another user, with the open opportunities and open tasks of
    each that its previous owner had. A supervisor hands over the customers of their
    teams, and pool customers, to users of their teams; an admin anything to anyone
    active. Returns what moved (customers already the target's are left alone)."""
    _require_role(actor, TRANSFERRING_ROLES, "hand customers over")
    ids = list(dict.fromkeys(_record_id("Customer", i) for i in customer_ids))
    if not ids or len(ids) > MAX_IDS:
        raise ValidationError(
            FieldProblem("Customer", "ids", f"must name 1 to {MAX_IDS} customers")
        )
    text = _reason(reason, required=False)
    moved: dict[str, list[int]] = {"Customer": [], "Opportunity": [], "Task": []}
    with engine.records.transaction(write=True):
        target = _target(engine, to_user_id, actor)
        for cid in ids:
            customer = _lock(engine, "Customer", cid)
            if customer.owner is not None:
                engine.records.get("Customer", cid, actor=actor)  # NotFound when invisible
                _check_manages(engine, actor, customer, "hand over")
            if customer.owner == target.id:
                continue
            previous = customer.owner
            _hand(engine, "Customer", cid, target.id, actor, "transfer", text)
            moved["Customer"].append(cid)
            if previous is None:
                continue
            opportunities = _ids(
                _open_opportunities(
                    _owned_by(engine, "Opportunity", previous).filter(
                        "lambda x: x.customer.id == c", {}, {"c": cid}
                    ),
                    engine,
                )
            )
            tasks = _ids(
                _open_tasks(_owned_by(engine, "Task", previous)).filter(
                    "lambda x: (x.customer is not None and x.customer.id == c) or "
                    "(x.opportunity is not None and x.opportunity.id in opps)",
                    {},
                    {"c": cid, "opps": opportunities or [0]},
                )
            )
            for entity, found in (("Opportunity", opportunities), ("Task", tasks)):
                for rid in found:
                    _hand(engine, entity, rid, target.id, actor, "transfer", text)
                moved[entity].extend(found)
    return Holdings(
        customers=tuple(moved["Customer"]),
        opportunities=tuple(moved["Opportunity"]),
        tasks=tuple(moved["Task"]),
    )


def transfer_all(
    engine: Any, from_user_id: Any, to_user_id: Any, *, actor: Actor, reason: Any = None
) -> Holdings:
    """Hand everything ``from_user_id`` works on (see :func:`holdings`) to ``to_user_id``
    - what deactivating a user requires. Admins, or a supervisor when both users are of
    their teams. Returns what moved."""
    _require_role(actor, TRANSFERRING_ROLES, "hand a user's records over")
    text = _reason(reason, required=False)
    with engine.records.transaction(write=True):
        source = _user(engine, from_user_id, "from_user_id")
        target = _target(engine, to_user_id, actor)
        if source.id == target.id:
            raise ValidationError(
                FieldProblem("User", "to_user_id", "is the user the records are taken from")
            )
        if not actor.is_admin and source.team not in actor.team_ids:
            raise PermissionDenied(
                f"{source.username} is not in your team or its sub-teams: only an admin "
                "hands their records over"
            )
        held = holdings(engine, source.id)
        for entity, ids in (
            ("Customer", held.customers),
            ("Opportunity", held.opportunities),
            ("Contract", held.contracts),
            ("Task", held.tasks),
        ):
            for rid in ids:
                _hand(engine, entity, rid, target.id, actor, "transfer", text)
    return held


#: The entities whose writes :func:`record_written` acts on.
WRITTEN = frozenset({"User"})


def record_written(engine: Any, event: RecordEvent) -> None:
    """A user who still works on records is neither deactivated nor deleted."""
    if event.entity not in WRITTEN:
        return
    if event.action == "update":
        was, now = event.changes.get("active", (None, None))
        if not (was and not now):
            return
    elif event.action != "delete":
        return
    held = holdings(engine, event.record_id)
    if held.empty:
        return
    name = event.values.get("display_name") or event.values["username"]
    message = (
        f"{name} still owns {held.describe()}: hand them to another user first with "
        f"transferAll(fromUserId: {event.record_id}, toUserId: ...)"
    )
    if event.action == "delete":
        raise ConflictError(f"User #{event.record_id} cannot be deleted: {message}")
    raise ValidationError(FieldProblem("User", "active", message))


def before_commit(engine: Any, event: RecordEvent) -> dict[str, Any] | None:
    """``Customer.owned_since``: when the customer came to its owner (empty in the pool)."""
    if event.entity != "Customer":
        return None
    owner = event.values["owner"]
    if event.action == "create":
        if owner is None or event.values.get("owned_since") is not None:
            return None
        return {"owned_since": engine.now()}
    if event.action == "update" and "owner" in event.changes:
        return {"owned_since": engine.now() if owner is not None else None}
    return None


# -- the return rule ------------------------------------------------------------------------
def return_idle_customers(engine: Any, now: datetime) -> None:
    """Return customers nobody worked for ``GUANXI_SALES_POOL_RETURN_DAYS`` days to the pool
    (0: never) and tell their owner; warn the owner ``GUANXI_SALES_POOL_NOTICE_DAYS`` days
    before (0: no warning). Idle means: no activity and no change of owner in that time; a
    customer with an open opportunity or an active contract never returns.

    The warning comes once per idle period, and a customer returns only once its owner
    was warned that many days before - a customer found long idle (the rule just switched
    on, the worker stopped for a while) is warned first and returns later. At most
    RETURN_BATCH customers return per run, the longest idle first; the rest next time.
    """
    days = setting(engine, POOL_RETURN_DAYS)
    if not days:
        return
    notice = min(setting(engine, POOL_NOTICE_DAYS), days)
    warning = timedelta(days=notice)
    due: list[tuple[datetime, int, str, int]] = []
    for cid, name, owner, idle_since in _idle(engine, now - timedelta(days=days) + warning):
        returns_at = idle_since + timedelta(days=days)
        if notice:
            key = f"{NOTICE_TEMPLATE}:{cid}:{owner}:{idle_since.isoformat()}"
            warned = _queued_at(engine, key)
            if warned is None:
                _notify(
                    engine,
                    key,
                    {
                        "user": owner,
                        "template": NOTICE_TEMPLATE,
                        "entity": "Customer",
                        "record_id": cid,
                        "name": name,
                        "returns_at": max(returns_at, now + warning).isoformat(),
                        "idle_days": (now - idle_since).days,
                    },
                )
                continue
            returns_at = max(returns_at, warned + warning)
        if returns_at <= now:
            due.append((idle_since, cid, name, owner))
    rule = f"no activity for {days} days ({POOL_RETURN_DAYS})"
    for idle_since, cid, name, owner in sorted(due)[:RETURN_BATCH]:
        _hand(engine, "Customer", cid, None, SYSTEM, "return", rule)
        _notify(
            engine,
            f"{RETURNED_TEMPLATE}:{cid}:{owner}:{idle_since.isoformat()}",
            {
                "user": owner,
                "template": RETURNED_TEMPLATE,
                "entity": "Customer",
                "record_id": cid,
                "name": name,
                "idle_days": (now - idle_since).days,
            },
        )


def _idle(engine: Any, cutoff: datetime) -> list[tuple[int, str, int, datetime]]:
    """Owned customers idle since ``cutoff`` or longer, with nothing keeping them:
    (id, name, owner id, idle since) in one query."""
    globals_ = {**engine.classes, "exists": exists}
    query = (
        engine.records.scoped_query("Customer")
        .filter(
            "lambda x: x.owner is not None and x.created_at <= t "
            "and (x.last_activity_at is None or x.last_activity_at <= t) "
            "and (x.owned_since is None or x.owned_since <= t)",
            {},
            {"t": cutoff},
        )
        .filter(
            "lambda x: not exists(o for o in Opportunity if o.customer == x "
            "and o.deleted_at is None and o.stage in states)",
            globals_,
            {"states": open_states(engine)},
        )
        .filter(
            "lambda x: not exists(k for k in Contract if k.customer == x "
            "and k.deleted_at is None and k.status == 'active')",
            globals_,
            {},
        )
    )
    rows = select(
        (x.id, x.name, x.owner.id, x.created_at, x.last_activity_at, x.owned_since) for x in query
    )
    out = []
    for cid, name, owner, *moments in rows:
        out.append((cid, name, owner, max(m for m in moments if m is not None)))
    return out


def _queued_at(engine: Any, key: str) -> datetime | None:
    """When the message ``key`` was queued (None: never), from the outbox."""
    row = engine.classes["GxOutbox"].get(key=key)
    return row.created_at if row is not None else None


def _notify(engine: Any, key: str, payload: dict[str, Any]) -> None:
    """Queue an inbox notification; a key already queued is not queued again."""
    engine.runtime.enqueue("inbox", key=key, payload=payload)


def register_periodic_jobs(register: Any) -> None:
    register("sales.pool_return", RETURN_INTERVAL_SECONDS, return_idle_customers)


# -- lookup ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Match:
    """A customer matching a lookup, and who works it - nothing else about it."""

    id: int
    name: str
    owner_id: int | None
    owner: str | None
    team: str | None
    matched_keys: tuple[str, ...]


def lookup(
    engine: Any, *, actor: Actor, name: str | None = None, phone: str | None = None
) -> list[Match]:
    """Customers anywhere whose normalised name or phone (its own, or a contact's mobile)
    equals the one given, best match first - for any signed-in user, whatever they may
    read: the answer names only the customer, its owner and the owner's team."""
    name = name.strip() if isinstance(name, str) else ""
    phone = phone.strip() if isinstance(phone, str) else ""
    if not name and not phone:
        raise ValidationError(FieldProblem("Customer", "name", "give a name or a phone to look up"))
    found: dict[int, list[str]] = {}
    for c in engine.duplicates.candidates(
        "Customer", {"name": name or None, "phone": phone or None}
    ):
        found.setdefault(c.record_id, []).extend(c.matched_keys)
    with engine.records.transaction():
        if phone:
            contacts = [
                c.record_id for c in engine.duplicates.candidates("Contact", {"mobile": phone})
            ]
            for contact in contacts:
                cid = engine.records.get("Contact", contact).customer
                keys = found.setdefault(cid, [])
                if "contact.mobile" not in keys:
                    keys.append("contact.mobile")
        customers = engine.records.list(
            "Customer", filter={"id": {"in": list(found)}}, first=len(found)
        ).records
        owners = {c.owner for c in customers if c.owner is not None}
        users = {
            u.id: u
            for u in engine.records.list(
                "User", filter={"id": {"in": list(owners)}}, first=len(owners)
            ).records
        }
        team_ids = {u.team for u in users.values() if u.team is not None}
        teams = {
            t.id: t.name
            for t in engine.records.list(
                "Team", filter={"id": {"in": list(team_ids)}}, first=len(team_ids)
            ).records
        }
    out = []
    for c in customers:
        user = users.get(c.owner)
        out.append(
            Match(
                id=c.id,
                name=c.name,
                owner_id=c.owner,
                owner=_name(user) if user is not None else None,
                team=teams.get(user.team) if user is not None else None,
                matched_keys=tuple(found[c.id]),
            )
        )
    out.sort(key=lambda m: (-len(m.matched_keys), m.id))
    return out


# -- GraphQL ----------------------------------------------------------------------------------
@strawberry.type(description="A customer a lookup found: who works it, nothing more.")
class CustomerMatch:
    id: strawberry.ID
    name: str
    owner_id: Optional[strawberry.ID]  # noqa: UP045
    owner: Optional[str] = strawberry.field(  # noqa: UP045
        description="The owner's display name (else user name); null: in the shared pool."
    )
    team: Optional[str] = strawberry.field(description="The owner's team.")  # noqa: UP045
    in_pool: bool
    matched_keys: list[str] = strawberry.field(
        description="What matched: name, phone, contact.mobile."
    )


@strawberry.type(description="What a hand-over moved, by kind of record.")
class HandOver:
    customers: list[strawberry.ID]
    opportunities: list[strawberry.ID]
    contracts: list[strawberry.ID]
    tasks: list[strawberry.ID]


def _hand_over(held: Holdings) -> HandOver:
    def ids(values: Iterable[int]) -> list[strawberry.ID]:
        return [strawberry.ID(str(v)) for v in values]

    return HandOver(
        customers=ids(held.customers),
        opportunities=ids(held.opportunities),
        contracts=ids(held.contracts),
        tasks=ids(held.tasks),
    )


def _match(m: Match) -> CustomerMatch:
    return CustomerMatch(
        id=strawberry.ID(str(m.id)),
        name=m.name,
        owner_id=strawberry.ID(str(m.owner_id)) if m.owner_id is not None else None,
        owner=m.owner,
        team=m.team,
        in_pool=m.owner_id is None,
        matched_keys=list(m.matched_keys),
    )


def register_graphql(schema: Any) -> None:
    customer = Optional[schema.entity("Customer").object]  # noqa: UP045

    async def lookup_customer(
        info: strawberry.Info,
        name: Optional[str] = None,  # noqa: UP045
        phone: Optional[str] = None,  # noqa: UP045
    ) -> list[CustomerMatch]:
        """Whether a customer with this name or phone exists anywhere, and who works it."""
        ctx: Context = info.context
        actor = ctx.require_actor()
        found = await in_thread(lambda: lookup(ctx.engine, actor=actor, name=name, phone=phone))
        return [_match(m) for m in found]

    async def claim_customer(info: strawberry.Info, id: strawberry.ID) -> Any:
        """Take a customer from the shared pool (公海): you become its owner."""
        ctx: Context = info.context
        actor = ctx.require_actor()
        return await call_engine(lambda: claim(ctx.engine, id, actor=actor))

    async def release_customer(info: strawberry.Info, id: strawberry.ID, reason: str) -> Any:
        """Put a customer back into the shared pool, saying why; null when you do not
        read the pool."""
        ctx: Context = info.context
        actor = ctx.require_actor()
        return await call_engine(lambda: release(ctx.engine, id, reason, actor=actor))

    async def transfer_customers_(
        info: strawberry.Info,
        ids: list[strawberry.ID],
        to_user_id: strawberry.ID,
        reason: Optional[str] = None,  # noqa: UP045
    ) -> HandOver:
        """Hand customers, with their open opportunities and tasks, to another user."""
        ctx: Context = info.context
        actor = ctx.require_actor()
        held = await call_engine(
            lambda: transfer_customers(ctx.engine, ids, to_user_id, actor=actor, reason=reason)
        )
        return _hand_over(held)

    async def transfer_all_(
        info: strawberry.Info,
        from_user_id: strawberry.ID,
        to_user_id: strawberry.ID,
        reason: Optional[str] = None,  # noqa: UP045
    ) -> HandOver:
        """Hand everything a user works on to another user (before deactivating them)."""
        ctx: Context = info.context
        actor = ctx.require_actor()
        held = await call_engine(
            lambda: transfer_all(ctx.engine, from_user_id, to_user_id, actor=actor, reason=reason)
        )
        return _hand_over(held)

    claim_customer.__annotations__["return"] = customer
    release_customer.__annotations__["return"] = customer
    schema.query("lookup_customer", strawberry.field(resolver=lookup_customer))
    schema.mutation("claim_customer", strawberry.field(resolver=claim_customer))
    schema.mutation("release_customer", strawberry.field(resolver=release_customer))
    schema.mutation("transfer_customers", strawberry.field(resolver=transfer_customers_))
    schema.mutation("transfer_all", strawberry.field(resolver=transfer_all_))
