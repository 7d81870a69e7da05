"""Nested connections: the first N children of a batch of parents, in two queries.

``Fair.expoBookings(first: 5)`` under a page of fairs needs, per fair, how many bookings
match and the first five in the requested order. Loading every child and slicing in
Python reads all rows of a parent with thousands of children; a query per parent makes
the cost grow with the page. Instead, one window query ranks and counts the matching
children within each parent (``ROW_NUMBER() OVER (PARTITION BY parent ORDER BY ...)``) and
returns only the ranks up to N; one query loads those records. The children's query -
permission scope and filter included - is Pony's own, used as the window's subquery, so
the window sees exactly the rows the caller may read.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from collections.abc import Mapping
from typing import Any

from pony.orm import select


def first_per_parent(
    db: Any,
    cls: Any,
    query: Any,
    parent: str,
    order: str,
    order_globals: Mapping[str, Any],
    first: int,
) -> tuple[dict[int, int], dict[int, list[Any]]]:
    """For the records of ``query`` (of entity class ``cls``), grouped by their ref
    ``parent``: the number of records per parent id and at most ``first`` of them in
    ``order`` (lambda text of ``compile_order``). Call inside a db_session.

    Parents without records are absent from both. Rows read: at most ``max(first, 1)`` per
    parent from the window query, at most ``first`` per parent from the records query.
    """
    quote = db.provider.quote_name
    alias = '"gx"'
    parent_column = f"{alias}.{quote(_column(cls, parent))}"
    id_column = f"{alias}.{quote(_column(cls, 'id'))}"
    ids_sql, arguments = _sql(select(x.id for x in query))
    # With first = 0 the rank-1 rows still carry their parent's total.
    ranked = f"""SELECT "gx_ranked"."id", "gx_ranked"."gx_parent", "gx_ranked"."gx_total"
FROM (
  SELECT {id_column} AS "id", {parent_column} AS "gx_parent",
    ROW_NUMBER() OVER (PARTITION BY {parent_column} ORDER BY {order_sql(order, cls, alias, quote)})
      AS "gx_rank",
    COUNT(*) OVER (PARTITION BY {parent_column}) AS "gx_total"
  FROM {quote(cls._table_)} {alias}
  WHERE {id_column} IN ({ids_sql})
) "gx_ranked"
WHERE "gx_ranked"."gx_rank" <= {max(int(first), 1)}"""
    totals: dict[int, int] = {}
    wanted: list[int] = []
    for rid, parent_id, total in _rows(db, ranked, arguments):
        totals[parent_id] = total
        wanted.append(rid)
    grouped: dict[int, list[Any]] = defaultdict(list)
    if first <= 0 or not wanted:
        return totals, grouped
    chosen = query.filter("lambda x: x.id in gx_ids", {}, {"gx_ids": wanted})
    for obj in chosen.order_by(order, order_globals, {}):
        grouped[getattr(obj, parent).id].append(obj)
    return totals, grouped


def order_sql(order: str, cls: Any, alias: str, quote: Any) -> str:
    """The SQL of an order's lambda text from ``compile_order`` (``lambda x: (x.notes is
    None, desc(x.notes), x.id)``): the same keys, so the window ranks in the order the
    records are listed."""
    lam = ast.parse(order, mode="eval").body
    if not isinstance(lam, ast.Lambda):
        raise ValueError(f"not an order lambda: {order}")
    keys = lam.body.elts if isinstance(lam.body, ast.Tuple) else [lam.body]

    def column(node: ast.expr) -> str:
        if not (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)):
            raise ValueError(f"unexpected order key {ast.unparse(node)} in {order}")
        return f"{alias}.{quote(_column(cls, node.attr))}"

    out = []
    for key in keys:
        if (
            isinstance(key, ast.Compare)
            and isinstance(key.ops[0], ast.Is)
            and isinstance(key.comparators[0], ast.Constant)
            and key.comparators[0].value is None
        ):
            out.append(f"{column(key.left)} IS NULL")
        elif isinstance(key, ast.Call) and isinstance(key.func, ast.Name) and key.func.id == "desc":
            out.append(f"{column(key.args[0])} DESC")
        else:
            out.append(column(key))
    return ", ".join(out)


def _column(cls: Any, name: str) -> str:
    (column,) = getattr(cls, name).columns
    return column


# Pony has no public way to get a query's SQL with its arguments, or to run SQL in the
# provider's own parameter style; these two are the only places that reach inside it.
def _sql(query: Any) -> tuple[str, Any]:
    sql, arguments, _offsets, _key = query._construct_sql_and_arguments()
    return sql, arguments


def _rows(db: Any, sql: str, arguments: Any) -> list[tuple[Any, ...]]:
    return db._exec_sql(sql, arguments).fetchall()
