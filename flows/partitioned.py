"""Validate and protect one dataset's extract in partitions on a Dask cluster.

For a dataset too large for one process: the extract is cut into partitions (Arrow
record batches of the raw table with their typed rows), each partition is validated
and then protected as its own Prefect task on Prefect's ``DaskTaskRunner``
(prefect-dask), and the partitions' results merge into the report the serial path
(``validate`` then ``protect``) gives for the whole table. The logic lives in
``civicflow.quality.batches`` and ``civicflow.privacy.batches``; this module only wires
tasks.

The cluster is a ``LocalCluster`` (``workers`` processes, one thread each, no
dashboard, quiet logs) unless ``CIVICFLOW_DASK_ADDRESS`` (or ``address``) names the
scheduler of a running cluster, e.g. ``tcp://dask-scheduler:8786``. Workers of a real
cluster need civicflow installed and the hash key (``CIVICFLOW_HASH_KEY`` or access to
the Prefect Secret block) in their own environment: secrets never travel with a task.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import dask
import pandas as pd
from distributed import LocalCluster
from prefect import Task, flow, get_run_logger
from prefect_dask import DaskTaskRunner

from civicflow import pipeline
from civicflow.privacy.batches import ProtectPart, frame_batches, merge_privacy, protect_batch
from civicflow.privacy.report import PrivacyReport
from civicflow.quality import QualityReport, quarantine_bad_rows
from civicflow.quality.batches import (
    BatchPart,
    ValidationPlan,
    duplicate_rows,
    key_rows,
    merge_validation,
    plan_validation,
    split_extract,
    validate_batch,
)
from civicflow.settings import load_settings
from civicflow.sources.base import Extract
from civicflow.spec import DatasetSpec, find_dataset
from flows._common import as_task, flow_settings

DASK_ADDRESS_ENV = "CIVICFLOW_DASK_ADDRESS"
#: rows per partition when the flow is not told (about 90 MB of 311-shaped raw text)
DEFAULT_PARTITION_ROWS = 250_000


#: each worker process's environment: Dask logs errors only; GX's analytics (no network
#: here) would hold a worker's exit past the nanny's 4 s and get it killed, noisily
WORKER_ENV = {"DASK_LOGGING__DISTRIBUTED": "error", "GX_ANALYTICS_ENABLED": "False"}


class QuietLocalCluster(LocalCluster):
    """A LocalCluster that keeps its own start, dashboard and close lines out of the
    flow's log (Prefect's handlers print every propagated record: LocalCluster's
    ``silence_logs`` reaches only Dask's own handler)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._quiet = logging.getLogger("distributed")
        self._loud = self._quiet.level
        self._quiet.setLevel(logging.ERROR)
        try:
            super().__init__(*args, **kwargs)
        except BaseException:
            self._quiet.setLevel(self._loud)
            raise

    @property
    def dashboard_link(self) -> str:
        return ""  # none is served (``dashboard: False``); prefect-dask logs any link

    def __exit__(self, *exc: Any) -> None:
        try:
            super().__exit__(*exc)
        finally:
            self._quiet.setLevel(self._loud)


def dask_runner(
    address: str | None = None, workers: int = 2, processes: bool = True
) -> DaskTaskRunner:
    """The task runner: the cluster at ``address`` (default ``CIVICFLOW_DASK_ADDRESS``),
    else a temporary LocalCluster the flow starts and shuts down."""
    address = address or os.environ.get(DASK_ADDRESS_ENV) or None
    if address:
        return DaskTaskRunner(address=address)
    return DaskTaskRunner(
        cluster_class=QuietLocalCluster,
        cluster_kwargs={
            "n_workers": workers,
            # one task per worker process: GX keeps process-wide state, so no threads
            "threads_per_worker": 1,
            "processes": processes,
            # no dashboard; its HTTP routes on a free port, not on a shared 8787
            "dashboard_address": ":0",
            "scheduler_kwargs": {"dashboard": False},
            "silence_logs": logging.ERROR,
            "env": WORKER_ENV,
        },
    )


def _validate_partition(plan: ValidationPlan, partition: Extract) -> BatchPart:
    return validate_batch(plan, partition)


def _key_rows(plan: ValidationPlan, partition: Extract, rows: Any) -> pd.DataFrame:
    return key_rows(plan, partition, rows)


def _protect_partition(spec: DatasetSpec, frame: pd.DataFrame) -> ProtectPart:
    # The hash key is read where the partition runs (a HashKey refuses to be pickled).
    return protect_batch(spec, frame, load_settings())


# as_task builds Tasks (typed as plain callables there): these are submitted to Dask
validate_partition = cast(Task[..., BatchPart], as_task("validate-partition", _validate_partition))
partition_key_rows = cast(Task[..., pd.DataFrame], as_task("partition-key-rows", _key_rows))
protect_partition = cast(Task[..., ProtectPart], as_task("protect-partition", _protect_partition))


@dataclass
class PartitionedRun:
    """What the partitioned path found: the same reports as the serial stages."""

    dataset_id: str
    run_id: str
    outcome: str  # "checked" (both stages ran), "rejected" or "unchanged"
    reason: str
    partitions: int = 0
    report: QualityReport | None = None
    privacy: PrivacyReport | None = None
    #: the protected table (what the publish stage would take)
    frame: pd.DataFrame | None = None
    report_path: Path | None = None
    privacy_report_path: Path | None = None


def _validated(plan: ValidationPlan, partitions: list[Extract]) -> QualityReport:
    # A partition's rows go with its task; the large-graph warning would name every one.
    with dask.config.set({"distributed.admin.large-graph-warning-threshold": "2GB"}):
        futures = [validate_partition.submit(plan, p) for p in partitions]
        parts = [f.result() for f in futures]
        wanted = duplicate_rows(plan, parts)  # none unless a key hash repeats
        fetches = [partition_key_rows.submit(plan, partitions[i], r) for i, r in wanted.items()]
        fetched = [f.result() for f in fetches]
    return as_task("merge-validation", merge_validation)(plan, parts, fetched)


def _protected(
    spec: DatasetSpec, frame: pd.DataFrame, rows: int
) -> tuple[PrivacyReport, pd.DataFrame]:
    with dask.config.set({"distributed.admin.large-graph-warning-threshold": "2GB"}):
        futures = [protect_partition.submit(spec, b) for b in frame_batches(frame, rows)]
        parts = [f.result() for f in futures]
    report = as_task("merge-privacy", merge_privacy)(spec, parts)
    return report, pd.concat([p.frame for p in parts if p.frame is not None])


@flow(
    name="validate-and-protect-partitions",
    flow_run_name="partitions-{dataset_id}",
    task_runner=dask_runner(),  # type: ignore[arg-type]  # prefect-dask's future type
)
def validate_and_protect_partitions(
    dataset_id: str,
    source_path: str | None = None,
    partitions: int | None = None,
    partition_rows: int = DEFAULT_PARTITION_ROWS,
) -> PartitionedRun:
    """Extract ``dataset_id``, validate and protect its partitions on Dask, write both
    reports where the serial stages write them, and return them with the protected
    table. ``partitions`` (a count) wins over ``partition_rows`` (a size).

    Nothing is published or recorded in the ledger: a rejected extract, failed
    critical checks (after quarantine, as the serial run applies it) or a privacy
    finding end the run here with the reason.
    """
    logger = get_run_logger()
    settings = flow_settings()
    spec = find_dataset(settings.datasets_dir, dataset_id)
    run_id = pipeline.new_run_id()
    ext = as_task("extract", pipeline.extract_stage)(spec, settings, run_id, source_path)
    if isinstance(ext, pipeline.NotExtracted):
        outcome = "unchanged" if ext.unchanged else "rejected"
        return PartitionedRun(dataset_id, run_id, outcome, f"extract: {ext.error}")
    rows = max(1, math.ceil(ext.rows / partitions) if partitions else partition_rows)
    pieces = split_extract(ext, rows, copy=True)
    logger.info("%s: %s rows in %d partitions", dataset_id, f"{ext.rows:,}", len(pieces))
    report_path, privacy_path = pipeline.report_paths(settings, spec.id, run_id)

    report = _validated(plan_validation(spec, settings.expectations_dir), pieces)
    run = PartitionedRun(dataset_id, run_id, "checked", "", len(pieces), report)
    frame = ext.frame
    if not report.passed:
        held = quarantine_bad_rows(spec, ext, report, settings)
        if held is None or not held.accepted or held.frame is None:
            run.report_path = report.write(report_path)
            run.outcome, run.reason = "rejected", held.reason if held else report.summary()
            logger.error("%s: %s", dataset_id, run.reason)
            return run
        frame = held.frame
    run.report_path = report.write(report_path)
    logger.info("%s: %s (report %s)", dataset_id, report.summary(), report_path)

    run.privacy, run.frame = _protected(spec, frame, rows)
    run.privacy_report_path = run.privacy.write(privacy_path)
    logger.info("%s: privacy: %s", dataset_id, run.privacy.summary())
    if run.privacy.blocked:
        run.outcome, run.reason = "rejected", f"privacy: {run.privacy.summary()}"
    else:
        run.reason = report.summary()
    return run


def run_partitioned(
    dataset_id: str,
    source_path: str | None = None,
    *,
    partitions: int | None = None,
    partition_rows: int = DEFAULT_PARTITION_ROWS,
    address: str | None = None,
    workers: int = 2,
    processes: bool = True,
) -> PartitionedRun:
    """The flow on a runner chosen now (``address``, else ``CIVICFLOW_DASK_ADDRESS``,
    else a LocalCluster of ``workers``), not when this module was imported."""
    runner = dask_runner(address, workers, processes)
    return validate_and_protect_partitions.with_options(task_runner=runner)(  # type: ignore[arg-type]
        dataset_id, source_path, partitions, partition_rows
    )
