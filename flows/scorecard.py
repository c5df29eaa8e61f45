"""Scorecard flow: KPIs from published data, performance_metrics back to the portal,
certification from catalog and ledger, then the leadership page.

Every step is a ``civicflow.metrics.scorecard`` function run as a task; publishing
``performance_metrics`` reuses the pipeline (extract → validate → protect → publish)
with each stage a task, exactly as the publish flow does.

The catalog, the metrics files and the KPI results go to their tasks ``quote``d:
Prefect otherwise walks every argument looking for futures to wait on, and walking
a year of daily points of every KPI, and every spec, cost more than a second.
"""

from __future__ import annotations

import time
from typing import Any

from prefect import flow, get_run_logger
from prefect.states import Completed, State
from prefect.utilities.annotations import quote

from civicflow import pipeline
from civicflow.metrics import scorecard as sc
from civicflow.metrics.compute import PERFORMANCE_DATASET, small_count_threshold
from flows._common import as_task, failed, flow_settings
from flows.artifacts import attach_run_report


@flow(name="scorecard")
def scorecard(publish: bool = True) -> State:
    """Compute every KPI, publish performance_metrics (unless ``publish`` is False),
    assess certification and write var/site/scorecard/."""
    logger = get_run_logger()
    settings = flow_settings()
    timings: dict[str, float] = {}
    started = time.perf_counter()

    loaded = as_task("load-metrics", sc.load)(settings)
    t = time.perf_counter()
    results = as_task("compute-kpis", sc.compute_kpis)(settings, quote(loaded))
    timings["compute_kpis_s"] = time.perf_counter() - t
    for r in results:
        logger.info("%s", sc.kpi_log_line(r))
    csv_path = as_task("write-performance-csv", sc.write_performance_csv)(
        settings, quote(results), small_count_threshold(loaded.catalog)
    )

    publish_summary: dict[str, Any] | None = None
    publish_error: BaseException | None = None
    if publish:
        t = time.perf_counter()
        try:
            outcome = pipeline.run_dataset(settings, PERFORMANCE_DATASET, wrap=as_task)
            attach_run_report(PERFORMANCE_DATASET, outcome.report_path)
            publish_summary = {
                "outcome": outcome.outcome,
                "reason": outcome.reason,
                "report": str(outcome.report_path) if outcome.report_path else None,
            }
        except (
            Exception
        ) as exc:  # recorded as failed in the ledger; re-raised after the page is written
            publish_error = exc
            publish_summary = {
                "outcome": "failed",
                "reason": f"{type(exc).__name__}: {exc}",
                "report": None,
            }
        timings["publish_s"] = time.perf_counter() - t
        logger.info(
            "%s: %s: %s", PERFORMANCE_DATASET, publish_summary["outcome"], publish_summary["reason"]
        )

    # Public only after it passed: the published version, never the staged file.
    public_csv = as_task("export-performance-csv", sc.export_performance_csv)(settings)
    t = time.perf_counter()
    card = as_task("certify", sc.build)(settings, quote(loaded), quote(results))
    paths = as_task("write-site", sc.write_site)(settings, quote(card), sc.page_text(loaded))
    timings["certify_and_render_s"] = time.perf_counter() - t
    timings["total_s"] = time.perf_counter() - started
    cert = card.certification
    logger.info(
        "certification: %s (%.0f %% of criteria met); page %s",
        cert.level,
        cert.percent,
        paths["html"],
    )

    summary = {
        "level": cert.level,
        "percent": round(cert.percent, 1),
        "next_level": cert.next_level,
        "kpis": {r.kpi.id: r.status for r in results},
        "performance_csv": str(csv_path),
        "performance_csv_public": str(public_csv) if public_csv else None,
        "site": {k: str(v) for k, v in paths.items()},
        "publish": publish_summary,
        "timings": {k: round(v, 3) for k, v in timings.items()},
    }
    if publish_error is not None:
        raise publish_error
    if publish_summary is not None and publish_summary["outcome"] not in ("published", "unchanged"):
        return failed(
            f"{PERFORMANCE_DATASET} {publish_summary['outcome']}: {publish_summary['reason']}",
            summary,
        )
    return Completed(message=f"scorecard written: {cert.level}, {len(results)} KPIs", data=summary)
