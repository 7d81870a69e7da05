"""Sales: customers, contacts, the sales pipeline, contracts and collections.

Contributes the business roles the sources name for sales work; its entities and the
``sales_pipeline`` workflow arrive with the sales issue.
"""

from guanxi.engine import hookimpl

name = "sales"
requires: tuple[str, ...] = ()

ROLES = {
    "executive": {
        "label": "Executive",
        "labels": {"zh": "高管"},
        "default": {"read": "all", "create": "none", "update": "none", "delete": "none"},
    },
    "sales_supervisor": {
        "label": "Sales supervisor",
        "labels": {"zh": "销售主管"},
        "default": {"read": "team", "create": "team", "update": "team", "delete": "none"},
    },
    "customer_manager": {
        "label": "Customer manager",
        "labels": {"zh": "客户经理"},
        "default": {"read": "own", "create": "own", "update": "own", "delete": "none"},
    },
    "finance": {
        "label": "Finance",
        "labels": {"zh": "财务"},
        "default": {"read": "all", "create": "none", "update": "none", "delete": "none"},
    },
}


@hookimpl
def register_roles(register):
    for role, definition in ROLES.items():
        register(role, definition)
