"""Compile a KPI definition to one DuckDB query.

Every KPI, declarative or raw, answers in the same long shape so the rest of the
scorecard never branches on how it was defined:

    period DATE, dimension VARCHAR, group_key VARCHAR, group_label VARCHAR, value DOUBLE, n BIGINT

``dimension`` is null on the overall rows and otherwise names the dimension's column.
A declarative KPI's overall rows cover every period, its group rows only the reporting
period (the latest in the whole dataset), the only one whose groups are shown: groups of
a year of days (medians among them) would cost most of the query for rows thrown away.
Datasets are tables (views over their latest published Parquet) named by dataset id.
Filter values travel as query parameters, never spliced into the SQL text.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from civicflow.metrics.models import Filter, Kpi, Measure

RESULT_COLUMNS = ("period", "dimension", "group_key", "group_label", "value", "n")
#: a declarative KPI that tracks records still open adds each period's share of them
OPEN_COLUMNS = (*RESULT_COLUMNS, "open_share")


@dataclass(frozen=True)
class CompiledKpi:
    """The query for one KPI, its parameters and the query for its reporting period."""

    kpi_id: str
    sql: str
    params: dict[str, Any] = field(default_factory=dict)
    #: latest period present in the whole (unfiltered) dataset: the reporting period
    period_sql: str = ""
    #: per period: percent of records still open and how many records (see ``StillOpen``);
    #: only for a raw-SQL KPI (a declarative one answers it in ``sql``'s ``open_share``)
    open_sql: str = ""
    open_params: dict[str, Any] = field(default_factory=dict)
    #: the columns ``sql`` returns
    columns: tuple[str, ...] = RESULT_COLUMNS


def ident(name: str) -> str:
    """Quote an identifier (names are validated snake_case; quoting guards keywords)."""
    return '"' + name.replace('"', '""') + '"'


def period_expr(column: str, grain: str) -> str:
    return f"CAST(date_trunc('{grain}', {ident(column)}) AS DATE)"


class _Params:
    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    def __call__(self, value: Any) -> str:
        name = f"p{len(self.values)}"
        self.values[name] = value
        return f"${name}"


def filter_sql(flt: Filter, param: Callable[[Any], str]) -> str:
    """One filter as a boolean SQL expression.

    ``ne`` and ``not_in`` keep rows whose field is empty (like pandas' ``!=``), so a
    filter that excludes one channel does not silently drop unrecorded ones.
    """
    col = ident(flt.column)
    op = flt.op
    if op == "is_null":
        return f"{col} IS NULL"
    if op == "not_null":
        return f"{col} IS NOT NULL"
    if op in ("in", "not_in"):
        assert flt.values is not None
        listed = ", ".join(param(v) for v in flt.values)
        return (
            f"{col} IN ({listed})" if op == "in" else f"({col} IS NULL OR {col} NOT IN ({listed}))"
        )
    symbol = {"eq": "=", "lt": "<", "le": "<=", "gt": ">", "ge": ">="}.get(op)
    if symbol is not None:
        return f"{col} {symbol} {param(flt.value)}"
    if op == "ne":
        return f"{col} IS DISTINCT FROM {param(flt.value)}"
    raise ValueError(f"no SQL for filter op {op!r}")


def value_sql(measure: Measure) -> str | None:
    if measure.column is not None:
        return ident(measure.column)
    if measure.expression is not None:
        return f"({measure.expression})"
    return None


def aggregate_sql(measure: Measure, param: Callable[[Any], str]) -> tuple[str, str]:
    """(value aggregate, record-count aggregate) over the ``v`` / ``hit`` columns of ``base``."""
    kind = measure.kind
    has_value = measure.column is not None or measure.expression is not None
    if kind == "count":
        agg = "count(v)" if has_value else "count(*)"
        return agg, agg
    if kind == "count_distinct":
        return "count(DISTINCT v)", "count(v)"
    if kind == "sum":
        return "sum(v)", "count(v)"
    if kind == "mean":
        return "avg(v)", "count(v)"
    if kind == "median":
        return "median(v)", "count(v)"
    if kind == "percentile":
        return f"quantile_cont(v, {float(measure.percentile or 0)!r})", "count(v)"
    if kind == "share_within":
        missing = "0.0" if measure.missing == "outside" else "NULL"
        thr = param(measure.threshold)
        agg = (
            f"100.0 * avg(CASE WHEN v IS NULL THEN {missing} WHEN v <= {thr} THEN 1.0 ELSE 0.0 END)"
        )
        return agg, ("count(*)" if measure.missing == "outside" else "count(v)")
    if kind == "share_where":
        return "100.0 * avg(CASE WHEN hit THEN 1.0 ELSE 0.0 END)", "count(*)"
    raise ValueError(f"no SQL for measure {kind!r}")


def open_share_sql(kpi: Kpi) -> tuple[str, dict[str, Any]]:
    """Per period, the percent of records still open: ``period, open_share, n``."""
    if kpi.still_open is None:
        return "", {}
    param = _Params()
    among = kpi.still_open.among if kpi.still_open.among is not None else kpi.filters
    where = " AND ".join(filter_sql(f, param) for f in among) or "TRUE"
    is_open = " AND ".join(filter_sql(f, param) for f in kpi.still_open.where)
    period = period_expr(kpi.period.column, kpi.period.grain)
    sql = (
        f"SELECT {period} AS period, 100.0 * avg(CASE WHEN {is_open} THEN 1.0 ELSE 0.0 END) AS open_share, "
        f"count(*) AS n FROM {ident(kpi.dataset)} WHERE {where} GROUP BY 1 HAVING period IS NOT NULL ORDER BY 1"
    )
    return sql, param.values


def compile_kpi(kpi: Kpi) -> CompiledKpi:
    """The KPI's query in the long result shape (see module docstring)."""
    compiled = _compile_value(kpi)
    if kpi.sql is None:
        return compiled
    open_sql, open_params = open_share_sql(kpi)
    return dataclasses.replace(compiled, open_sql=open_sql, open_params=open_params)


def _compile_value(kpi: Kpi) -> CompiledKpi:
    table = ident(kpi.dataset)
    period = period_expr(kpi.period.column, kpi.period.grain)
    period_sql = f"SELECT CAST(date_trunc('{kpi.period.grain}', max({ident(kpi.period.column)})) AS DATE) FROM {table}"
    if kpi.sql is not None:
        cols = ", ".join(RESULT_COLUMNS)
        wrapped = (
            f"SELECT CAST(period AS DATE) AS period, CAST(dimension AS VARCHAR) AS dimension, "
            f"CAST(group_key AS VARCHAR) AS group_key, CAST(group_label AS VARCHAR) AS group_label, "
            f"CAST(value AS DOUBLE) AS value, CAST(n AS BIGINT) AS n FROM (\n{kpi.sql.strip().rstrip(';')}\n) AS raw_kpi"
        )
        return CompiledKpi(
            kpi.id,
            f"SELECT {cols} FROM ({wrapped}) ORDER BY period, dimension NULLS FIRST, group_key",
            {},
            period_sql,
        )

    assert kpi.measure is not None
    param = _Params()
    measure = kpi.measure
    base_cols = [f"{period} AS period"]
    value = value_sql(measure)
    if value is not None:
        base_cols.append(f"{value} AS v")
    if measure.kind == "share_where":
        base_cols.append(
            "(" + " AND ".join(filter_sql(f, param) for f in measure.where) + ") AS hit"
        )
    # Dimensions are read as they are stored and cast to text only in the reporting
    # period's rows (the cast of every row was a good part of the query).
    labelled_cols = ["base.period"] + (["base.v"] if value is not None else [])
    labelled_cols += ["base.hit"] if measure.kind == "share_where" else []
    joins: list[str] = []
    for i, dim in enumerate(kpi.dimensions):
        base_cols.append(f"{ident(dim.column)} AS r{i}")
        labelled_cols.append(f"CAST(base.r{i} AS VARCHAR) AS d{i}")
    where = " AND ".join(filter_sql(f, param) for f in kpi.filters) or "TRUE"
    # Records still open: their share per period comes from the same scan. Over other
    # rows than the value's (``among``), the scan reads both and each aggregate keeps its own.
    still = kpi.still_open
    among = still.among if still is not None else None
    kept = counted = ""
    if still is not None:
        if among is not None:
            among_where = " AND ".join(filter_sql(f, param) for f in among) or "TRUE"
            base_cols += [f"({where}) AS kept", f"({among_where}) AS counted"]
            where = f"({where}) OR ({among_where})"
            kept, counted = " FILTER (WHERE kept)", " FILTER (WHERE counted)"
        is_open = " AND ".join(filter_sql(f, param) for f in still.where)
        base_cols.append(f"({is_open}) AS still_open")
    for i, dim in enumerate(kpi.dimensions):
        if dim.lookup is not None:
            lk = dim.lookup
            joins.append(
                f"LEFT JOIN (SELECT CAST({ident(lk.key)} AS VARCHAR) AS lookup_key, min(CAST({ident(lk.label)} AS VARCHAR)) AS lookup_label "
                f"FROM {ident(lk.dataset)} GROUP BY 1) AS lk{i} ON lk{i}.lookup_key = CAST(base.r{i} AS VARCHAR)"
            )
            labelled_cols.append(f"lk{i}.lookup_label AS l{i}")
        else:
            labelled_cols.append(f"CAST(NULL AS VARCHAR) AS l{i}")
    agg, n_agg = aggregate_sql(measure, param)

    open_col = no_open = ""
    if still is not None:
        share = f"100.0 * avg(CASE WHEN still_open THEN 1.0 ELSE 0.0 END){counted}"
        open_col, no_open = f", {share} AS open_share", ", CAST(NULL AS DOUBLE) AS open_share"
    series = (
        "SELECT period, CAST(NULL AS VARCHAR) AS dimension, CAST(NULL AS VARCHAR) AS group_key, "
        f"CAST(NULL AS VARCHAR) AS group_label,\n  CAST({agg}{kept} AS DOUBLE) AS value, CAST({n_agg}{kept} AS BIGINT) AS n{open_col}\n"
        "FROM base\nWHERE period IS NOT NULL\nGROUP BY period"
        # a period none of whose rows the value counts has no point (only open ones)
        + ("\nHAVING count(*) FILTER (WHERE kept) > 0" if kept else "")
    )
    parts = [series]
    if kpi.dimensions:
        # Groups only for the reporting period (the latest in the whole dataset): the page
        # and performance_metrics show no other period's groups, so none is computed.
        sets = [f"(period, d{i}, l{i})" for i in range(len(kpi.dimensions))]
        dim_case = " ".join(
            f"WHEN GROUPING(d{i}) = 0 THEN '{d.column}'" for i, d in enumerate(kpi.dimensions)
        )
        key_case = " ".join(
            f"WHEN GROUPING(d{i}) = 0 THEN d{i}" for i in range(len(kpi.dimensions))
        )
        label_case = " ".join(
            f"WHEN GROUPING(d{i}) = 0 THEN l{i}" for i in range(len(kpi.dimensions))
        )
        dim_cols = f"CASE {dim_case} END AS dimension, CASE {key_case} END AS group_key, CASE {label_case} END AS group_label"
        parts.append(
            f"SELECT period, {dim_cols},\n  CAST({agg} AS DOUBLE) AS value, CAST({n_agg} AS BIGINT) AS n{no_open}\n"
            f"FROM labelled\nGROUP BY GROUPING SETS ({', '.join(sets)})"
        )
    newline = "\n"
    ctes = [f"base AS (\n  SELECT {', '.join(base_cols)}\n  FROM {table}\n  WHERE {where}\n)"]
    if kpi.dimensions:
        latest = f"date_trunc('{kpi.period.grain}', max({ident(kpi.period.column)}))"
        ctes.append(f"reporting AS (\n  SELECT CAST({latest} AS DATE) AS period FROM {table}\n)")
        ctes.append(
            f"labelled AS (\n  SELECT {', '.join(labelled_cols)}\n  FROM base"
            f"{newline + '  ' if joins else ''}{(newline + '  ').join(joins)}\n"
            "  WHERE base.period = (SELECT period FROM reporting)"
            + (" AND base.kept" if kept else "")
            + "\n)"
        )
    sql = (
        f"WITH {', '.join(ctes)}\n"
        + "\nUNION ALL\n".join(parts)
        + "\nORDER BY period, dimension NULLS FIRST, group_key"
    )
    columns = OPEN_COLUMNS if still is not None else RESULT_COLUMNS
    return CompiledKpi(kpi.id, sql, param.values, period_sql, columns=columns)
