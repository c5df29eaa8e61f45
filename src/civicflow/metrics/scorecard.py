"""The scorecard's steps as plain functions (the Prefect flow only wires them).

1. ``load`` the catalog and ``metrics/``; 2. ``compute_kpis`` from published Parquet;
3. ``write_performance_csv`` — the KPI values as an open dataset, small counts
already suppressed, staged privately under ``var/scorecard/`` (the pipeline then
validates, scans and publishes it as ``performance_metrics``);
``export_performance_csv`` then puts the published version next to the page;
4. ``certify`` from catalog, ledger and published data; 5. ``write_site`` —
``index.html`` (self-contained, English), ``index.es.html`` (the same in Spanish),
``scorecard.json`` and ``scorecard.csv``.
Files are written under a temporary name and renamed, ``index.html`` last, so a
reader never sees a half-written scorecard.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from civicflow import published
from civicflow.metrics.card import Scorecard, kpi_to_dict, rounded_share
from civicflow.metrics.certification import CertificationResult, assess, gather
from civicflow.metrics.charts import fmt
from civicflow.metrics.compute import (
    PERFORMANCE_DATASET,
    KpiResult,
    compute_all,
    small_count_threshold,
)
from civicflow.metrics.i18n import PAGES
from civicflow.metrics.loader import MetricsConfig, load_metrics
from civicflow.metrics.site import PageText, render_page
from civicflow.privatefs import write_private
from civicflow.settings import Settings
from civicflow.spec import load_all
from civicflow.spec.models import DatasetSpec

PERFORMANCE_COLUMNS = [
    "kpi_id",
    "kpi_title",
    "department",
    "period_start",
    "period_grain",
    "dimension",
    "group_key",
    "group_label",
    "value",
    "records",
    "suppressed",
    "open_share",
    "provisional",
    "unit",
    "target",
    "target_direction",
    "source_dataset",
    "source_version",
]
SCORECARD_COLUMNS = [
    "kpi_id",
    "title",
    "department",
    "owner",
    "period",
    "value",
    "unit",
    "target",
    "target_direction",
    "status",
    "reason",
    "open_share",
    "records",
    "source_dataset",
    "source_version",
    "source_published_at",
    "data_url",
]


def site_dir(settings: Settings) -> Path:
    return settings.site_dir / "scorecard"


def performance_csv_path(settings: Settings) -> Path:
    """The staged source of ``performance_metrics``: private, under var/ but outside the
    site, because it has not been validated and scanned yet when it is written."""
    return settings.var_dir / "scorecard" / "performance_metrics.csv"


def public_performance_csv_path(settings: Settings) -> Path:
    """The public copy next to the page: exported from the published version only."""
    return site_dir(settings) / "performance_metrics.csv"


@dataclass
class Loaded:
    catalog: dict[str, DatasetSpec]
    metrics: MetricsConfig


def load(settings: Settings) -> Loaded:
    """The catalog and every metrics file; a bad file raises SpecError naming it."""
    return Loaded(load_all(settings.datasets_dir), load_metrics(settings.metrics_dir))


def compute_kpis(settings: Settings, loaded: Loaded) -> list[KpiResult]:
    return compute_all(settings, loaded.metrics.kpis, loaded.catalog)


def kpi_log_line(r: KpiResult) -> str:
    """One KPI for the flow log: the value rounded as the page shows it (not 14 decimals)."""
    if r.status == "no_data":
        line = f"KPI {r.kpi.id}: no data: {r.reason or ''}"
        # the engine's own message may quote data: the log (private, under var/) keeps it
        return line + (f" [{r.detail}]" if r.detail else "")
    value = r.current.value if r.current else None
    shown = "—" if value is None else fmt(value, r.kpi.decimals)
    return f"KPI {r.kpi.id}: {shown} {r.kpi.unit} ({r.status.replace('_', ' ')})"


def _csv_text(columns: list[str], rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def _num(value: float | None) -> str:
    return "" if value is None else repr(round(value, 6))


def performance_rows(results: list[KpiResult], threshold: int) -> list[dict[str, Any]]:
    """Long rows: every period overall, plus every group of the reporting period.

    Record counts below ``threshold`` are always left empty (the value too, unless the
    KPI turned suppression off for totals not about people). No computation timestamp:
    the same source versions give the same file, so the portal keeps its version
    ("unchanged") until a source dataset changes.
    """
    rows: list[dict[str, Any]] = []
    for r in results:
        if r.source is None or not r.series:
            continue
        kpi = r.kpi
        common = {
            "kpi_id": kpi.id,
            "kpi_title": kpi.title,
            "department": kpi.department,
            "period_grain": kpi.period.grain,
            "unit": kpi.unit,
            "target": _num(kpi.target.value) if kpi.target else "",
            "target_direction": kpi.target.direction if kpi.target else "",
            "source_dataset": r.source.dataset_id,
            "source_version": r.source.version,
        }
        for p in r.series:
            rows.append(
                common
                | {
                    "period_start": p.period.isoformat(),
                    "dimension": "all",
                    "group_key": "all",
                    "group_label": "All",
                    "value": _num(p.value),
                    "records": "" if p.suppressed or p.n < threshold else p.n,
                    "suppressed": "true" if p.suppressed else "false",
                    "open_share": _num(rounded_share(p.open_share)),
                    "provisional": "true" if r.is_provisional(p) else "false",
                }
            )
        for b in r.breakdowns:
            for g in b.groups:
                rows.append(
                    common
                    | {
                        "period_start": b.period.isoformat(),
                        "dimension": b.column,
                        "group_key": g.key if g.key is not None else "not_recorded",
                        "group_label": g.label,
                        "value": _num(g.value),
                        "records": "" if g.suppressed or g.n < threshold else g.n,
                        "suppressed": "true" if g.suppressed else "false",
                        # open shares are per period; a group is provisional with its period
                        "open_share": "",
                        "provisional": "true" if r.status == "provisional" else "false",
                    }
                )
    return rows


def write_performance_csv(settings: Settings, results: list[KpiResult], threshold: int) -> Path:
    """The source file of the ``performance_metrics`` dataset (its spec reads this path)."""
    path = performance_csv_path(settings)
    write_private(path, _csv_text(PERFORMANCE_COLUMNS, performance_rows(results, threshold)))
    return path


def export_performance_csv(settings: Settings) -> Path | None:
    """Put in public exactly what passed: the published version of ``performance_metrics``.

    The staged file never goes public; after a rejected run the public copy stays the
    last version that passed, and with no published version there is no public copy.
    """
    public = public_performance_csv_path(settings)
    manifest = published.latest(settings, PERFORMANCE_DATASET)
    if (
        manifest is None
        or not manifest.path.is_file()
        or published.file_sha256(manifest.path) != manifest.sha256
    ):
        public.unlink(missing_ok=True)
        return None
    buf = pa.BufferOutputStream()
    pa_csv.write_csv(pq.read_table(manifest.path), buf, pa_csv.WriteOptions(quoting_style="needed"))
    write_private(public, buf.getvalue().to_pybytes().decode("utf-8"))
    return public


def certify(
    settings: Settings, loaded: Loaded, results: list[KpiResult] | None, now: datetime | None = None
) -> CertificationResult:
    inputs = gather(
        settings,
        loaded.catalog,
        loaded.metrics.kpis,
        results,
        loaded.metrics.attestations.attestations,
        now,
    )
    return assess(loaded.metrics.certification, inputs)


def scorecard_rows(results: list[KpiResult]) -> list[dict[str, Any]]:
    rows = []
    for r in results:
        d = kpi_to_dict(r)
        rows.append(
            {
                "kpi_id": d["id"],
                "title": d["title"],
                "department": d["department"],
                "owner": f"{r.kpi.owner.name} <{r.kpi.owner.email}>",
                "period": d["period"]["start"],
                "value": _num(d["value"]),
                "unit": d["unit"],
                "target": _num(r.kpi.target.value) if r.kpi.target else "",
                "target_direction": r.kpi.target.direction if r.kpi.target else "",
                "status": r.status,
                "reason": r.reason or "",
                "open_share": _num(rounded_share(r.open_share)),
                "records": d["records"] if d["records"] is not None else "",
                "source_dataset": r.kpi.dataset,
                "source_version": r.source.version if r.source else "",
                "source_published_at": r.source.published_at if r.source else "",
                "data_url": r.source.portal_path if r.source else "",
            }
        )
    return rows


def page_text(loaded: Loaded) -> PageText:
    """The Spanish the result does not carry: catalog titles, certification.yaml's own."""
    cert = loaded.metrics.certification
    return PageText(
        dataset_titles_es={i: s.title_es for i, s in loaded.catalog.items() if s.title_es},
        standard_es=cert.standard_es,
        below_levels_es=cert.below_levels_es,
    )


def write_site(
    settings: Settings, card: Scorecard, text: PageText | None = None
) -> dict[str, Path]:
    """Write scorecard.json, scorecard.csv, index.es.html (Spanish) and index.html (English,
    last). ``text``: the Spanish of dataset titles and certification.yaml (read from the
    project when not given)."""

    folder = site_dir(settings)
    paths = {
        "json": folder / "scorecard.json",
        "csv": folder / "scorecard.csv",
        "html_es": folder / PAGES["es"],
        "html": folder / PAGES["en"],
    }
    if text is None:
        text = page_text(load(settings))
    write_private(paths["json"], json.dumps(card.to_dict(), indent=2, default=str) + "\n")
    write_private(paths["csv"], _csv_text(SCORECARD_COLUMNS, scorecard_rows(card.results)))
    write_private(paths["html_es"], render_page(card, "es", text))
    write_private(paths["html"], render_page(card, "en", text))
    return paths


def build(
    settings: Settings, loaded: Loaded, results: list[KpiResult], now: datetime | None = None
) -> Scorecard:
    now = now or datetime.now(UTC)
    return Scorecard(
        now,
        results,
        certify(settings, loaded, results, now),
        small_count_threshold(loaded.catalog),
        public_performance_csv_path(settings).is_file(),
    )


__all__ = [
    "PERFORMANCE_DATASET",
    "Loaded",
    "Scorecard",
    "build",
    "certify",
    "compute_kpis",
    "load",
    "export_performance_csv",
    "page_text",
    "performance_csv_path",
    "public_performance_csv_path",
    "site_dir",
    "write_performance_csv",
    "write_site",
]
