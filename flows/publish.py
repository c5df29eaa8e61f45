"""Publish flows: one dataset (extract → validate → protect → publish) or all of them.

The orchestration lives in ``civicflow.pipeline.run_dataset``; this module only
turns each stage into a Prefect task and a rejected run into a Failed state, so the
Prefect UI shows every stage, retry and failure with the steward-readable reason.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prefect import Task, flow, get_run_logger
from prefect.cache_policies import NO_CACHE
from prefect.states import Completed, Failed, State

from civicflow import pipeline
from civicflow.settings import load_settings
from civicflow.spec import load_all

# Only the publish stage talks to a network service; retry it for transient errors.
_RETRIES = {"publish": 2}


def _as_task(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    return Task(
        fn, name=name, cache_policy=NO_CACHE, retries=_RETRIES.get(name, 0), retry_delay_seconds=3
    )


def summarize(outcome: pipeline.RunOutcome) -> dict[str, Any]:
    record = outcome.record
    return {
        "dataset_id": record.dataset_id,
        "run_id": record.run_id,
        "outcome": outcome.outcome,
        "reason": outcome.reason,
        "rows_in": record.rows_in,
        "rows_out": record.rows_out,
        "report": str(outcome.report_path) if outcome.report_path else None,
        "privacy_report": str(outcome.privacy_report_path) if outcome.privacy_report_path else None,
        "url": outcome.result.url if outcome.result else None,
    }


@flow(name="publish-dataset", flow_run_name="publish-{dataset_id}")
def publish_dataset(dataset_id: str, source_path: str | None = None) -> State:
    """Publish one dataset; a rejected run ends Failed with the reason, the portal untouched."""
    logger = get_run_logger()
    outcome = pipeline.run_dataset(load_settings(), dataset_id, source_path, wrap=_as_task)
    summary = summarize(outcome)
    if not outcome.ok:
        logger.error("%s rejected: %s", dataset_id, outcome.reason)
        return Failed(message=f"{dataset_id} rejected: {outcome.reason}", data=summary)
    logger.info("%s %s: %s", dataset_id, outcome.outcome, outcome.reason)
    return Completed(message=f"{dataset_id} {outcome.outcome}", data=summary)


@flow(name="publish-all")
def publish_all() -> State:
    """Publish every dataset in datasets/ that no other flow produces."""
    settings = load_settings()
    ids = pipeline.publishable(load_all(settings.datasets_dir))
    summaries = []
    for dataset_id in ids:
        state = publish_dataset(dataset_id, return_state=True)
        result = state.result(raise_on_failure=False)
        summaries.append(
            result
            if isinstance(result, dict)
            else {"dataset_id": dataset_id, "outcome": "failed", "reason": str(result)}
        )
    bad = [s["dataset_id"] for s in summaries if s["outcome"] not in ("published", "unchanged")]
    if bad:
        return Failed(message=f"not published: {', '.join(bad)}", data=summaries)
    return Completed(message=f"{len(summaries)} datasets published or unchanged", data=summaries)
