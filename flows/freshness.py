"""Freshness flow: every dataset's data age judged on a schedule, stewards alerted once
per change (``civicflow.alerts.freshness_watch``); deployed as ``freshness-hourly``."""

from __future__ import annotations

import dataclasses

from prefect import flow, get_run_logger
from prefect.states import Completed, State

from civicflow.alerts.freshness_watch import check_freshness
from flows._common import as_task, flow_settings


@flow(name="freshness")
def freshness() -> State:
    """Check every dataset's freshness; the run's message names the stale ones."""
    logger = get_run_logger()
    checked = as_task("check-freshness", check_freshness)(flow_settings())
    for c in checked:
        told = f"; told: {', '.join(c.sent)}" if c.sent else ""
        logger.info("%s: %s (%s)%s", c.dataset_id, c.state, c.detail, told)
    stale = [c.dataset_id for c in checked if c.state == "stale"]
    return Completed(
        message=f"{len(checked)} datasets checked; stale: {', '.join(stale) or 'none'}",
        data=[dataclasses.asdict(c) for c in checked],
    )
