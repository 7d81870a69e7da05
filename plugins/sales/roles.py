"""The business roles of sales work, in the ``roles.yaml`` format of ``docs/workflows.md``.

Scopes follow ownership: a customer manager works the customers they own (or are an
``edit`` member of) and everything owned through them - contacts, quotes, orders,
payments - plus their own opportunities, contracts, activities and tasks, and reads the
customers of the shared pool with their contacts (to claim them; see pool.py); a sales
supervisor does the same for their team and its sub-teams; finance reads everything and
confirms payments; an executive reads everything. Products are a shared catalogue,
competitors a shared list. Deleting is kept for small records a person logs themselves.
"""

from __future__ import annotations

from typing import Any

_READ_ONLY = {"read": "all", "create": "none", "update": "none", "delete": "none"}
#: Records people log themselves and may remove again.
_LOGGED = ("Contact", "DevelopmentPlanStep", "Quote", "QuoteLine", "OrderLine", "Activity", "Task")


def _works(scope: str, *, pool: bool = False) -> dict[str, Any]:
    """Scopes of someone who works the records of ``scope`` (own or team); with ``pool``
    they also read the customers of the shared pool and their contacts (pool.py masks
    their phones and e-mail addresses until claimed)."""
    entities: dict[str, dict[str, str]] = {
        "Product": _READ_ONLY,
        "Competitor": {"read": "all", "create": "all", "update": "none", "delete": "none"},
        # invoices are finance's to issue; sales people read those of their contracts
        "Invoice": {"read": scope, "create": "none", "update": "none", "delete": "none"},
    }
    for entity in _LOGGED:
        entities[entity] = {"delete": scope}
    if pool:
        reach = "own_or_unowned" if scope == "own" else "team_or_unowned"
        entities["Customer"] = {"read": reach}
        entities["Contact"] = {**entities["Contact"], "read": reach}
    return {
        "default": {"read": scope, "create": scope, "update": scope, "delete": "none"},
        "entities": entities,
        "export": scope,
    }


def _supervises() -> dict[str, Any]:
    """A supervisor works their teams' records and the pool, and may delete (merge away) a
    duplicate customer of their teams."""
    role = _works("team", pool=True)
    role["entities"]["Customer"] = {**role["entities"]["Customer"], "delete": "team"}
    return role


ROLES: dict[str, dict[str, Any]] = {
    "executive": {
        "label": "Executive",
        "labels": {"zh": "高管"},
        "description": "Reads every record and report; changes nothing.",
        "default": _READ_ONLY,
        "export": "all",
    },
    "sales_supervisor": {
        "label": "Sales supervisor",
        "labels": {"zh": "销售主管"},
        "description": "Works the records of their team and its sub-teams and reads the "
        "shared pool; assigns opportunities, reopens lost ones, hands customers over and "
        "merges duplicate customers.",
        **_supervises(),
    },
    "customer_manager": {
        "label": "Customer manager",
        "labels": {"zh": "客户经理"},
        "description": "Works their own customers, opportunities, contracts, activities and "
        "tasks; reads the shared pool (contact details masked) to claim from it.",
        **_works("own", pool=True),
        # exporting the customer list is not part of the job: an admin grants it in
        # roles.yaml (export: own) to whom it is
        "export": "none",
    },
    "finance": {
        "label": "Finance",
        "labels": {"zh": "财务"},
        "description": "Reads everything; records and confirms payments, issues invoices, "
        "keeps instalments up to date.",
        "default": _READ_ONLY,
        "entities": {
            "Payment": {"read": "all", "create": "all", "update": "all", "delete": "none"},
            "Invoice": {"read": "all", "create": "all", "update": "all", "delete": "all"},
            "PaymentPlan": {"read": "all", "create": "none", "update": "all", "delete": "none"},
        },
        "export": "all",
    },
}
