"""Compute KPIs from the latest published Parquet of each dataset, with DuckDB.

A KPI that cannot be computed (dataset never published, Parquet missing or altered,
SQL error, no rows in the reporting period) comes back as "no data" with the reason;
it never stops the other KPIs, and a value from an earlier period or an earlier run
is never shown as current: the reporting period is the latest period present in the
dataset's current version, and everything is recomputed on every run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Literal

import duckdb

from civicflow import published
from civicflow.metrics.compile import CompiledKpi, compile_kpi, ident
from civicflow.metrics.models import Dimension, Kpi
from civicflow.settings import Settings
from civicflow.spec.models import DatasetSpec

Status = Literal["on_track", "off_track", "no_target", "provisional", "no_data"]
DEFAULT_MIN_RECORDS = 11
PERFORMANCE_DATASET = "performance_metrics"
_FILES_DISABLED = "file system operations are disabled by configuration"


class MetricUnavailable(Exception):
    """The KPI cannot be computed this run; the message is shown as the reason."""


@dataclass(frozen=True)
class SourceInfo:
    """The published version a KPI was computed from (the data behind it)."""

    dataset_id: str
    title: str
    version: str
    run_id: str
    published_at: str
    rows: int
    portal_path: str


@dataclass(frozen=True)
class Point:
    period: date
    value: float | None
    n: int
    suppressed: bool
    #: percent of the period's records still open (None when the KPI does not track it)
    open_share: float | None = None


@dataclass(frozen=True)
class Group:
    key: str | None
    label: str
    value: float | None
    n: int
    suppressed: bool


@dataclass(frozen=True)
class Breakdown:
    """One dimension's values for the reporting period."""

    column: str
    title: str
    equity: bool
    period: date
    groups: list[Group]
    max_bars: int | None = None


@dataclass
class KpiResult:
    kpi: Kpi
    status: Status
    reason: str | None = None
    period: date | None = None
    current: Point | None = None
    series: list[Point] = field(default_factory=list)
    breakdowns: list[Breakdown] = field(default_factory=list)
    source: SourceInfo | None = None
    min_records: int = DEFAULT_MIN_RECORDS
    sql: str = ""
    #: the engine's own error message: private (it may quote data), for the log only
    detail: str | None = None

    @property
    def has_value(self) -> bool:
        return self.status != "no_data"

    @property
    def open_share(self) -> float | None:
        return self.current.open_share if self.current else None

    def is_provisional(self, point: Point) -> bool:
        """More of the period's records still open than the KPI allows."""
        limit = self.kpi.still_open.max_share if self.kpi.still_open else None
        return limit is not None and point.open_share is not None and point.open_share > limit


def period_label(period: date, grain: str) -> str:
    if grain == "day":
        return period.isoformat()
    if grain == "week":
        return f"week of {period.isoformat()}"
    if grain == "month":
        return period.strftime("%b %Y")
    if grain == "quarter":
        return f"{period.year} Q{(period.month - 1) // 3 + 1}"
    return str(period.year)


def axis_label(period: date, grain: str) -> str:
    """Short period label for chart axes."""
    if grain in ("day", "week"):
        return period.strftime("%b %d").replace(" 0", " ")
    return period_label(period, grain)


def small_count_threshold(catalog: dict[str, DatasetSpec]) -> int:
    """The performance_metrics dataset's threshold: one number for the page and the portal."""
    spec = catalog.get(PERFORMANCE_DATASET)
    return spec.privacy.small_count_threshold if spec is not None else DEFAULT_MIN_RECORDS


class PublishedData:
    """An in-memory DuckDB with one view per published dataset (its latest version).

    Every dataset is attached first, then the connection is sandboxed: file access is
    switched off (only the verified published Parquet files stay readable) and the
    configuration locked, so a KPI's SQL can read the published tables and nothing else
    (not ``var/raw``, not a report, not another file on the machine).
    Datasets that are not usable are remembered with the reason, so each KPI that
    needs them can say why it has no data.
    """

    def __init__(self, settings: Settings, catalog: dict[str, DatasetSpec]):
        self.settings = settings
        self.catalog = catalog
        self.con = duckdb.connect()
        self.sources: dict[str, SourceInfo] = {}
        self.unavailable: dict[str, str] = {}
        self._allowed: list[str] = []
        self.sandboxed = False

    def open(self) -> None:
        """Attach every dataset of the catalog, then sandbox the connection."""
        for dataset_id in sorted(self.catalog):
            self._attach(dataset_id, self.catalog[dataset_id])
        self.sandbox()

    def sandbox(self) -> None:
        """No file access beyond the attached versions; nobody can switch it back on."""
        listed = ", ".join(_literal(p) for p in self._allowed)
        self.con.execute(f"SET allowed_paths = [{listed}]")
        self.con.execute("SET enable_external_access = false")
        self.con.execute("SET lock_configuration = true")
        self.sandboxed = True

    def _attach(self, dataset_id: str, spec: DatasetSpec) -> None:
        manifest = published.latest(self.settings, dataset_id)
        if manifest is None:
            self.unavailable[dataset_id] = f"dataset {dataset_id} has never been published"
            return
        if not manifest.path.is_file():
            self.unavailable[dataset_id] = (
                f"published file of {dataset_id} version {manifest.version[:12]} is missing"
            )
            return
        if published.file_sha256(manifest.path) != manifest.sha256:
            self.unavailable[dataset_id] = (
                f"published file of {dataset_id} version {manifest.version[:12]} does not match its manifest's sha256"
            )
            return
        path = str(manifest.path.resolve())
        self.con.execute(
            f"CREATE VIEW {ident(dataset_id)} AS SELECT * FROM read_parquet({_literal(path)})"
        )
        self._allowed.append(path)
        self.sources[dataset_id] = SourceInfo(
            dataset_id=dataset_id,
            title=spec.title,
            version=manifest.version,
            run_id=manifest.run_id,
            published_at=manifest.published_at,
            rows=manifest.rows,
            portal_path=f"/{self.settings.portal_database}/{spec.table}",
        )

    def require(self, dataset_id: str) -> SourceInfo:
        """The dataset's view (attached by ``open``), or why there is none."""
        if dataset_id in self.sources:
            return self.sources[dataset_id]
        if dataset_id in self.unavailable:
            raise MetricUnavailable(self.unavailable[dataset_id])
        raise MetricUnavailable(f"dataset {dataset_id} is not in the catalog (datasets/)")

    def close(self) -> None:
        self.con.close()


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _number(value: Any) -> float | None:
    if value is None:
        return None
    number = float(value)
    return None if math.isnan(number) or math.isinf(number) else number


def _group_label(dim: Dimension, key: str | None, label: str | None) -> str:
    if key is None:
        return "Not recorded"
    if label:
        return label
    return f"{dim.group_prefix or ''}{key}"


def _sort_key(group: Group) -> tuple[int, float, str]:
    if group.key is None:
        return (2, 0.0, "")
    try:
        return (0, float(group.key), group.label)
    except ValueError:
        return (1, 0.0, group.label)


def target_status(kpi: Kpi, value: float | None) -> Status:
    if value is None:
        return "no_data"
    if kpi.target is None:
        return "no_target"
    if kpi.target.direction == "lower_is_better":
        return "on_track" if value <= kpi.target.value else "off_track"
    return "on_track" if value >= kpi.target.value else "off_track"


def compute_kpi(
    kpi: Kpi, data: PublishedData, min_records: int, compiled: CompiledKpi | None = None
) -> KpiResult:
    """One KPI's result; raises MetricUnavailable or duckdb.Error when it cannot be computed."""
    compiled = compiled or compile_kpi(kpi)
    source = data.require(kpi.dataset)
    for dim in kpi.dimensions:
        if dim.lookup is not None:
            data.require(dim.lookup.dataset)
    row = data.con.execute(compiled.period_sql).fetchone()
    period = row[0] if row else None
    if period is None:
        raise MetricUnavailable(
            f"dataset {kpi.dataset} version {source.version[:12]} has no rows with a {kpi.period.column}"
        )
    rows = data.con.execute(compiled.sql, compiled.params).fetchall()
    open_shares = _open_shares(data, compiled)

    def suppressed(n: int) -> bool:
        return n < min_records

    series: list[Point] = []
    groups: dict[str, list[Group]] = {d.column: [] for d in kpi.dimensions}
    dims = {d.column: d for d in kpi.dimensions}
    for row in rows:
        r_period, dimension, key, label, value, n = row[:6]
        n = int(n or 0)
        hidden = suppressed(n)
        value = None if hidden else _number(value)
        if dimension is None:
            share = _share(row[6]) if len(row) > 6 else open_shares.get(r_period)
            series.append(Point(r_period, value, n, hidden, share))
        elif r_period == period:
            if dimension not in dims:
                raise MetricUnavailable(
                    f"query returned dimension {dimension!r}, which the KPI does not declare"
                )
            groups[dimension].append(
                Group(key, _group_label(dims[dimension], key, label), value, n, hidden)
            )
    series.sort(key=lambda p: p.period)
    result = KpiResult(
        kpi=kpi,
        status="no_data",
        period=period,
        series=series,
        source=source,
        min_records=min_records,
        sql=compiled.sql,
    )
    result.breakdowns = [
        Breakdown(
            d.column, d.title, d.equity, period, sorted(groups[d.column], key=_sort_key), d.max_bars
        )
        for d in kpi.dimensions
    ]
    current = next((p for p in series if p.period == period), None)
    label = period_label(period, kpi.period.grain)
    if current is None:
        result.reason = (
            f"no rows for {label} (the latest period in {kpi.dataset}) after the KPI's filters"
        )
        return result
    result.current = current
    if current.suppressed:
        result.reason = f"fewer than {min_records} records in {label}; the value is suppressed"
        return result
    if current.value is None:
        result.reason = (
            f"no value for {label}: the measured field is empty in every row of the period"
        )
        return result
    result.status = target_status(kpi, current.value)
    if result.is_provisional(current):
        # Mostly still open: the value counts only the records already done.
        result.status = "provisional"
    return result


def _share(value: Any) -> float | None:
    return None if value is None else float(value)


def _open_shares(data: PublishedData, compiled: CompiledKpi) -> dict[date, float]:
    """A raw-SQL KPI's open shares (a declarative KPI's come with its values)."""
    if not compiled.open_sql:
        return {}
    rows = data.con.execute(compiled.open_sql, compiled.open_params).fetchall()
    return {period: float(share) for period, share, _ in rows if share is not None}


def query_error_reason(kpi: Kpi, exc: duckdb.Error) -> str:
    """The public reason for a failed query: what happened, never the engine's message
    (DuckDB quotes the offending values, e.g. in a conversion error)."""
    # An extension autoload (sqlite_scan, httpfs) fails with a plain Error naming the same cause.
    if isinstance(exc, duckdb.PermissionException) or _FILES_DISABLED in str(exc):
        return (
            f"refused: the SQL of KPI {kpi.id} reads or writes a file; a KPI may read only "
            "the published datasets (tables named by dataset id)"
        )
    return f"query of KPI {kpi.id} failed ({type(exc).__name__}); the full error is in the scorecard log"


def _no_data(
    kpi: Kpi, data: PublishedData, min_records: int, sql: str, reason: str, detail: str | None
) -> KpiResult:
    return KpiResult(
        kpi=kpi,
        status="no_data",
        reason=reason,
        min_records=min_records,
        sql=sql,
        source=data.sources.get(kpi.dataset),
        detail=detail,
    )


def compute_all(
    settings: Settings, kpis: dict[str, Kpi], catalog: dict[str, DatasetSpec]
) -> list[KpiResult]:
    """Every KPI, in id order, over the sandboxed published data; one that fails becomes
    "no data" with the reason."""
    threshold = small_count_threshold(catalog)
    data = PublishedData(settings, catalog)
    results = []
    try:
        data.open()
        for kpi_id in sorted(kpis):
            kpi = kpis[kpi_id]
            min_records = kpi.min_records or threshold
            compiled = compile_kpi(kpi)
            try:
                results.append(compute_kpi(kpi, data, min_records, compiled))
            except MetricUnavailable as exc:
                results.append(_no_data(kpi, data, min_records, compiled.sql, str(exc), None))
            except duckdb.Error as exc:
                reason = query_error_reason(kpi, exc)
                detail = str(exc).strip() or type(exc).__name__
                results.append(_no_data(kpi, data, min_records, compiled.sql, reason, detail))
    finally:
        data.close()
    return results
