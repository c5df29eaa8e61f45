"""Publish flows: one dataset (extract → validate → protect → publish) or all of them.

The orchestration lives in ``civicflow.pipeline.run_dataset``; this module only
turns each stage into a Prefect task and a rejected run into a Failed state, so the
Prefect UI shows every stage, retry and failure with the steward-readable reason.

Runs of one dataset queue: each holds the Prefect global concurrency limit
``publish-<dataset id>`` (one slot, created on first use) for the whole run, so the
hourly and nightly deployments never publish the same table at once. The portal's
compare-and-swap still refuses a run that lost a race outside Prefect.
"""

from __future__ import annotations

import contextvars
import logging
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from typing import Any

from prefect import flow, get_run_logger
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
from prefect.concurrency.sync import concurrency
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound
from prefect.states import Completed, State

from civicflow import pipeline
from civicflow.spec import load_all
from flows._common import as_task, failed, flow_settings, summary_of
from flows.artifacts import attach_run_report

#: how long a run waits for another run of the same dataset before it gives up
QUEUE_TIMEOUT_S = 6 * 3600.0


def limit_name(dataset_id: str) -> str:
    return f"publish-{dataset_id}"


def ensure_limit(name: str) -> None:
    """Create the one-slot global concurrency limit if it does not exist yet.

    Prefect skips (with a warning) a limit that does not exist, which would let two
    runs through; ``concurrency(strict=True)`` below refuses instead of skipping.
    """
    with get_client(sync_client=True) as client:
        try:
            client.read_global_concurrency_limit_by_name(name)
        except ObjectNotFound:
            # ObjectAlreadyExists: another run created it first, which is as good.
            with suppress(ObjectAlreadyExists):
                client.create_global_concurrency_limit(
                    GlobalConcurrencyLimitCreate(name=name, limit=1)
                )


@contextmanager
def one_run_per_dataset(dataset_id: str, logger: logging.Logger | Any) -> Iterator[None]:
    """Hold the dataset's publish slot; wait (logged) while another run holds it."""
    name = limit_name(dataset_id)
    ensure_limit(name)
    asked = time.monotonic()
    with concurrency(name, occupy=1, timeout_seconds=QUEUE_TIMEOUT_S, strict=True):
        waited = time.monotonic() - asked
        if waited >= 1:
            logger.info(
                "%s: waited %.1f s for another publish of this dataset to finish",
                dataset_id,
                waited,
            )
        yield


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
def publish_dataset(
    dataset_id: str,
    source_path: str | None = None,
    portal: str | None = None,
    full: bool = False,
) -> State:
    """Publish one dataset; a rejected run ends Failed with the reason, the portal untouched.

    ``portal`` overrides the spec's portal kind; ``full`` ignores an incremental
    dataset's watermark and reads its source whole.
    """
    logger = get_run_logger()
    with one_run_per_dataset(dataset_id, logger):
        outcome = pipeline.run_dataset(
            flow_settings(), dataset_id, source_path, wrap=as_task, portal=portal, full=full
        )
    summary = summarize(outcome)
    attach_run_report(dataset_id, outcome.report_path)  # public: checks, counts, no values
    if not outcome.ok:
        logger.error("%s rejected: %s", dataset_id, outcome.reason)
        return failed(f"{dataset_id} rejected: {outcome.reason}", summary)
    logger.info("%s %s: %s", dataset_id, outcome.outcome, outcome.reason)
    return Completed(message=f"{dataset_id} {outcome.outcome}", data=summary)


@flow(name="publish-all")
def publish_all(
    portal: str | None = None, full: bool = False, skip: list[str] | None = None
) -> State:
    """Publish every dataset in datasets/ that no other flow produces (but ``skip``)."""
    settings = flow_settings()
    ids = [
        i for i in pipeline.publishable(load_all(settings.datasets_dir)) if i not in (skip or [])
    ]

    def one(dataset_id: str) -> dict[str, Any]:
        state = publish_dataset(dataset_id, portal=portal, full=full, return_state=True)
        result = summary_of(state)
        if isinstance(result, dict):
            return result
        return {"dataset_id": dataset_id, "outcome": "failed", "reason": str(result)}

    # Each dataset is its own subflow; up to publish_concurrency run at once, each in a
    # copy of this flow's context so the Prefect UI shows them under this run.
    workers = max(1, min(settings.publish_concurrency, len(ids)))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="publish") as pool:
        futures = [pool.submit(contextvars.copy_context().run, one, i) for i in ids]
        summaries = [f.result() for f in futures]
    bad = [s["dataset_id"] for s in summaries if s["outcome"] not in ("published", "unchanged")]
    if bad:
        return failed(f"not published: {', '.join(bad)}", summaries)
    return Completed(message=f"{len(summaries)} datasets published or unchanged", data=summaries)
