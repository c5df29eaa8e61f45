"""The KPI query computes groups for the reporting period only: on generated 311 data
(a year of days, ``civicflow bench generate``'s generator) every bundled KPI comes out
exactly as from the query it replaced, which grouped every period by every dimension
and left it to Python to keep the reporting period's groups.

The share of records still open, once a query of its own, now comes from the KPI's
own scan; it is compared too. The previous queries are rebuilt here from the same
helpers (filters, measures, lookups) as they were written before the change, so both
paths read the same published Parquet.
"""

from __future__ import annotations

import dataclasses
import math
import shutil
from pathlib import Path
from typing import Any

import pytest

from civicflow import synth
from civicflow.metrics import compile as kpi_compile
from civicflow.metrics import compute
from civicflow.metrics.compile import (
    CompiledKpi,
    _Params,
    aggregate_sql,
    filter_sql,
    ident,
    open_share_sql,
    period_expr,
    value_sql,
)
from civicflow.metrics.compute import KpiResult, PublishedData, compute_all
from civicflow.metrics.loader import load_kpis
from civicflow.metrics.models import Kpi
from civicflow.settings import Settings
from civicflow.spec import load_all
from tests.test_metrics_kpis import LA311, NC, publish_parquet

PROJECT = Path(__file__).resolve().parents[1]
ROWS = 60_000
#: the KPI ``bundled_kpis`` adds, with its open share over rows apart from its value's
APART = "water_waste_days_open_among_graffiti"


def previous_sql(kpi: Kpi) -> CompiledKpi:
    """The declarative KPI query before the change: every period's groups."""
    assert kpi.measure is not None
    table = ident(kpi.dataset)
    period = period_expr(kpi.period.column, kpi.period.grain)
    period_sql = f"SELECT CAST(date_trunc('{kpi.period.grain}', max({ident(kpi.period.column)})) AS DATE) FROM {table}"
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
    for i, dim in enumerate(kpi.dimensions):
        base_cols.append(f"CAST({ident(dim.column)} AS VARCHAR) AS d{i}")
    where = " AND ".join(filter_sql(f, param) for f in kpi.filters) or "TRUE"
    labelled_cols, joins = ["base.*"], []
    for i, dim in enumerate(kpi.dimensions):
        if dim.lookup is not None:
            lk = dim.lookup
            joins.append(
                f"LEFT JOIN (SELECT CAST({ident(lk.key)} AS VARCHAR) AS lookup_key, min(CAST({ident(lk.label)} AS VARCHAR)) AS lookup_label "
                f"FROM {ident(lk.dataset)} GROUP BY 1) AS lk{i} ON lk{i}.lookup_key = base.d{i}"
            )
            labelled_cols.append(f"lk{i}.lookup_label AS l{i}")
        else:
            labelled_cols.append(f"CAST(NULL AS VARCHAR) AS l{i}")
    agg, n_agg = aggregate_sql(measure, param)
    sets = ["(period)"] + [f"(period, d{i}, l{i})" for i in range(len(kpi.dimensions))]
    if kpi.dimensions:
        n = range(len(kpi.dimensions))
        dim_case = " ".join(
            f"WHEN GROUPING(d{i}) = 0 THEN '{d.column}'" for i, d in enumerate(kpi.dimensions)
        )
        key_case = " ".join(f"WHEN GROUPING(d{i}) = 0 THEN d{i}" for i in n)
        label_case = " ".join(f"WHEN GROUPING(d{i}) = 0 THEN l{i}" for i in n)
        dim_cols = f"CASE {dim_case} END AS dimension, CASE {key_case} END AS group_key, CASE {label_case} END AS group_label"
    else:
        dim_cols = "CAST(NULL AS VARCHAR) AS dimension, CAST(NULL AS VARCHAR) AS group_key, CAST(NULL AS VARCHAR) AS group_label"
    sql = (
        f"WITH base AS (SELECT {', '.join(base_cols)} FROM {table} WHERE {where}), "
        f"labelled AS (SELECT {', '.join(labelled_cols)} FROM base {' '.join(joins)}) "
        f"SELECT period, {dim_cols}, CAST({agg} AS DOUBLE) AS value, CAST({n_agg} AS BIGINT) AS n "
        f"FROM labelled WHERE period IS NOT NULL GROUP BY GROUPING SETS ({', '.join(sets)}) "
        "ORDER BY period, dimension NULLS FIRST, group_key"
    )
    return CompiledKpi(kpi.id, sql, param.values, period_sql)


def previous_compile(kpi: Kpi) -> CompiledKpi:
    """The previous queries: the value's (above) and the open share's, apart."""
    if kpi.sql is not None:  # a raw-SQL KPI's queries did not change
        return kpi_compile.compile_kpi(kpi)
    before = previous_sql(kpi)
    open_sql, open_params = open_share_sql(kpi)
    return CompiledKpi(kpi.id, before.sql, before.params, before.period_sql, open_sql, open_params)


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """A project whose 311 source is 60,000 generated rows, published the real way."""
    root = tmp_path_factory.mktemp("generated")
    shutil.copytree(PROJECT / "datasets", root / "datasets")
    spec = load_all(PROJECT / "datasets")["la311_service_requests"]
    source = root / LA311.relative_to(PROJECT)
    synth.generate(spec, Settings(project_dir=PROJECT, var_dir=root / "unused"), ROWS, 7, source)
    (root / NC.relative_to(PROJECT)).parent.mkdir(parents=True)
    shutil.copy(NC, root / NC.relative_to(PROJECT))
    settings = Settings(project_dir=root, var_dir=root / "var")
    for dataset_id in ("la311_service_requests", "neighborhood_councils"):
        publish_parquet(settings, dataset_id)
    return settings


def bundled_kpis(grain: str | None = None) -> dict[str, Kpi]:
    """The bundled KPIs with every value shown (no small-count suppression: the values
    themselves are compared), by day as written or by another ``grain``."""
    kpis = {}
    for kpi_id, kpi in load_kpis(PROJECT / "metrics").items():
        update: dict[str, Any] = {"min_records": 1}
        if grain is not None:
            update["period"] = kpi.period.model_copy(update={"grain": grain})
        kpis[kpi_id] = kpi.model_copy(update=update)
    # Open share over rows the value does not count (``among`` apart from the filters),
    # and a value from a rare type, so many periods have open rows but no value rows.
    apart = kpis["la311_median_days_to_close"].model_dump(exclude_none=True)
    apart |= {"id": APART, "title": "Open among others"}
    apart["filters"] = [
        {"column": "request_type", "op": "eq", "value": "Report Water Waste"},
        {"column": "status", "op": "eq", "value": "Closed"},
    ]
    apart["still_open"]["among"] = [
        {"column": "request_type", "op": "eq", "value": "Graffiti Removal"}
    ]
    kpis[apart["id"]] = Kpi.model_validate(apart)
    return kpis


def _results(
    settings: Settings, monkeypatch: pytest.MonkeyPatch | None, grain: str | None = None
) -> dict[str, KpiResult]:
    kpis = bundled_kpis(grain)
    if monkeypatch is not None:
        monkeypatch.setattr(compute, "compile_kpi", previous_compile)
    results = compute_all(settings, kpis, load_all(settings.datasets_dir))
    return {r.kpi.id: r for r in results}


def same(a: Any, b: Any) -> bool:
    """Equal, floats to 12 significant digits (DuckDB may add in another order)."""
    if dataclasses.is_dataclass(a) and not isinstance(a, type):
        return type(a) is type(b) and same(dataclasses.asdict(a), dataclasses.asdict(b))
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return (
            type(a) is type(b)
            and len(a) == len(b)
            and all(same(x, y) for x, y in zip(a, b, strict=True))
        )
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-12)
    return type(a) is type(b) and a == b


def test_same_tells_values_apart() -> None:
    assert same([(1, "a", 0.1 + 0.2)], [(1, "a", 0.3)])
    assert not same([(1, "a", 0.3)], [(1, "a", 0.31)])
    assert not same({"n": 1}, {"n": 2}) and not same([1], [1, 1]) and not same(1, 1.0)


def _values(r: KpiResult) -> dict[str, Any]:
    """Everything a result shows, without the SQL text (which is what changed)."""
    return {
        "status": r.status,
        "reason": r.reason,
        "period": r.period,
        "current": r.current,
        "series": r.series,
        "breakdowns": r.breakdowns,
    }


def test_generated_data_spans_many_periods_with_groups(generated: Settings) -> None:
    """The comparison means something: a year of days, and groups in the reporting day."""
    new = _results(generated, None)
    computed = [
        r
        for r in new.values()
        if r.source and r.source.dataset_id == "la311_service_requests" and r.kpi.id != APART
    ]
    assert len(computed) >= 5
    for r in computed:
        assert r.period is not None and len(r.series) > 300, r.kpi.id
        assert all(b.groups for b in r.breakdowns), r.kpi.id
    assert sum(r.current is not None and r.current.value is not None for r in computed) >= 4
    shown = [g for r in computed for b in r.breakdowns for g in b.groups if g.value is not None]
    assert len(shown) >= 20


@pytest.mark.parametrize("grain", [None, "week", "month"])
def test_new_query_gives_the_same_kpis_as_the_previous_one(
    generated: Settings, monkeypatch: pytest.MonkeyPatch, grain: str | None
) -> None:
    new = _results(generated, None, grain)
    old = _results(generated, monkeypatch, grain)
    assert sorted(new) == sorted(old)
    for kpi_id in new:
        assert same(_values(new[kpi_id]), _values(old[kpi_id])), kpi_id


def test_group_rows_only_for_the_reporting_period(generated: Settings) -> None:
    catalog = load_all(generated.datasets_dir)
    data = PublishedData(generated, catalog)
    data.open()
    try:
        for kpi in bundled_kpis("week").values():
            if kpi.sql is not None or not kpi.dimensions or kpi.dataset not in data.sources:
                continue
            compiled = kpi_compile.compile_kpi(kpi)
            (reporting,) = data.con.execute(compiled.period_sql).fetchone() or (None,)
            rows = data.con.execute(compiled.sql, compiled.params).fetchall()
            grouped = {r[0] for r in rows if r[1] is not None}
            assert grouped == {reporting}, kpi.id
            before = previous_sql(kpi)
            old = data.con.execute(before.sql, before.params).fetchall()
            # the same six columns (the open share, when there is one, is compared above)
            assert same(
                [r for r in old if r[1] is None or r[0] == reporting], [r[:6] for r in rows]
            )
    finally:
        data.close()
