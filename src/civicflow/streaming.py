"""The pipeline's checks over a large input, a batch of rows at a time.

``pipeline.run_dataset`` streams an input file of ``Settings.stream_min_bytes`` or more
when its source kind reads batches (CSV), its portal stages rows (Datasette) and the run
is not of an incremental dataset (a watermark). Memory then holds a few batches of
``Settings.batch_rows`` rows, whatever the file's size:

1. each batch is typed, validated (``quality.batches.validate_batch``, in a worker
   process when ``Settings.check_workers``: GX is pure Python, so the second core
   validates while this process protects) and protected
   (``privacy.batches.protect_batch``); its protected rows go to the version's Parquet
   copy (``published.CopyWriter``), the content hash and the empty counts, and, when
   the caller staged a new table, to the portal's private staging table from a second
   thread, so the portal stores rows while the next batch is checked;
2. the batch results merge into the whole table's reports, equal to those of the
   single-frame stages (rows whose key hash repeats are read again from their batches);
3. the pipeline publishes: the staged rows swapped in, or only the changed rows.

Nothing goes live here: a run whose checks fail discards what it staged.
"""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing
import queue
import threading
from collections import Counter, deque
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa

from civicflow.portals import StagedRows, StagingPortal, get_portal
from civicflow.privacy.batches import ProtectPart, merge_privacy, protect_batch
from civicflow.privacy.guard import spec_hash_key
from civicflow.privacy.report import PrivacyReport
from civicflow.progress import RowProgress
from civicflow.published import ContentHasher, CopyWriter, empty_counts
from civicflow.quality.batches import (
    BatchPart,
    ValidationPlan,
    duplicate_rows,
    key_rows,
    merge_validation,
    plan_validation,
    validate_batch,
)
from civicflow.quality.drift import SAMPLE_ROWS, SchemaDrift, schema_drift, type_failures
from civicflow.quality.report import QualityReport
from civicflow.settings import Settings
from civicflow.sources import RawCopy, can_read_batches, read_batches, resolve_source_path
from civicflow.sources.base import Extract
from civicflow.spec import DatasetSpec

log = logging.getLogger("civicflow.streaming")


def streams(
    spec: DatasetSpec, settings: Settings, source_path: Path | str | None, since: str | None
) -> bool:
    """Whether a run of ``spec`` on this input goes batch by batch (see the module).
    Not an incremental dataset's: its watermark comes from the whole frame's cursor."""
    if since is not None or spec.incremental is not None or not can_read_batches(spec):
        return False
    if not isinstance(get_portal(spec.portal.kind, settings), StagingPortal):
        return False
    path = resolve_source_path(spec, settings, source_path)
    return path.is_file() and path.stat().st_size >= settings.stream_min_bytes


@dataclass
class Checked:
    """A streamed run's checks: the merged reports and the protected rows' copy."""

    rows_in: int
    drift: SchemaDrift
    report: QualityReport
    privacy: PrivacyReport
    #: the protected rows as Parquet, complete (the version's kept copy once live)
    copy: CopyWriter
    #: ``published.content_version`` of the protected rows
    data_version: str
    #: ``published.empty_counts`` of the protected rows
    empty: dict[str, int]
    #: the rows staged on the portal (None: the caller staged nothing)
    staged: StagedRows | None
    #: why staging stopped early (the staged rows are then incomplete)
    staging_error: BaseException | None = None

    @property
    def passed(self) -> bool:
        return self.report.passed and not self.privacy.blocked and not self.drift.rejects()


class _Uploader:
    """Stages protected batches from a second thread, one batch queued ahead: the
    portal (another process) stores a batch while this one checks the next. A batch the
    portal refuses stops the staging, not the checks: it is the checks' verdict that
    says whether the run publishes (a repeated key, say, fails both)."""

    def __init__(self, staged: StagedRows) -> None:
        self.staged = staged
        self.error: BaseException | None = None
        self._queue: queue.Queue[pd.DataFrame | None] = queue.Queue(maxsize=1)
        self._thread = threading.Thread(target=self._run, name="civicflow-stage", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (batch := self._queue.get()) is not None:
            if self.error is None:
                try:
                    self.staged.load(batch)
                except BaseException as exc:  # noqa: BLE001 - kept for the caller
                    self.error = exc

    def put(self, batch: pd.DataFrame) -> None:
        if self.error is None:
            self._queue.put(batch)

    def close(self) -> BaseException | None:
        """Wait for the queued batches; what staging raised, if anything."""
        self._queue.put(None)
        self._thread.join()
        return self.error


@dataclass
class _Shipped:
    """A batch as sent to a check worker: a raw column equal to its typed text column
    travels once, as that column (half the bytes to pickle)."""

    batch: Extract
    #: raw column name -> the frame column holding the same text
    shared: dict[str, str]
    order: list[str]


def _ship(spec: DatasetSpec, batch: Extract) -> _Shipped:
    raw, frame, shared = batch.raw, batch.frame, {}
    for f in spec.fields:
        source = f.source_name
        if f.type != "string" or source not in raw.column_names or f.name not in frame:
            continue
        text = pa.chunked_array(pa.array(frame[f.name], from_pandas=True)).cast(raw[source].type)
        if text.equals(raw[source]):  # exactly: the worker rebuilds raw from it
            shared[source] = f.name
    kept = raw.drop_columns(list(shared))
    return _Shipped(dataclasses.replace(batch, raw=kept), shared, raw.column_names)


def _unship(shipped: _Shipped) -> Extract:
    batch = shipped.batch
    columns = {name: batch.raw[name] for name in batch.raw.column_names}
    for source, name in shipped.shared.items():
        typed = batch.frame[name]
        columns[source] = pa.chunked_array(pa.array(typed, from_pandas=True)).cast(pa.string())
    raw = pa.table({name: columns[name] for name in shipped.order})
    return dataclasses.replace(batch, raw=raw)


def _validate_shipped(plan: ValidationPlan, shipped: _Shipped) -> BatchPart:
    """``validate_batch`` in a check worker."""
    return validate_batch(plan, _unship(shipped))


def _warm() -> None:
    """A check worker's imports, made while the parent copies and plans."""
    import great_expectations  # noqa: F401


class _Validator:
    """``validate_batch`` of each batch in a worker process (``workers`` of them), at
    most one batch queued per worker besides the one it validates, or here when ``workers`` is 0. ``parts()``
    gives the results in batch order; a worker's exception is raised there."""

    def __init__(self, plan: ValidationPlan | None, workers: int) -> None:
        self.plan = plan
        self.workers = workers
        self._done: list[BatchPart] = []
        self._pending: deque[Future[BatchPart]] = deque()
        self._pool = None
        if workers:
            # spawn, not fork: the parent runs threads (staging, Prefect) whose locks a
            # forked child could inherit held
            context = multiprocessing.get_context("spawn")
            self._pool = ProcessPoolExecutor(workers, mp_context=context)
            self._pool.submit(_warm)  # start the workers now, not at the first batch

    def submit(self, batch: Extract) -> None:
        assert self.plan is not None
        if self._pool is None:
            self._done.append(validate_batch(self.plan, batch))
            return
        while len(self._pending) > self.workers:
            self._done.append(self._pending.popleft().result())
        shipped = _ship(self.plan.spec, batch)
        self._pending.append(self._pool.submit(_validate_shipped, self.plan, shipped))

    def parts(self) -> list[BatchPart]:
        while self._pending:
            self._done.append(self._pending.popleft().result())
        return self._done

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)


@dataclass
class _Tally:
    """What the merge needs of every batch; never the batches themselves."""

    validation: list[BatchPart]
    privacy: list[ProtectPart]
    failures: Counter[str]
    filled: Counter[str]
    empty: Counter[str]
    #: the first rows of the first batch: its columns and a renamed column's sample
    head: pa.Table | None = None
    rows: int = 0


def check_batches(
    spec: DatasetSpec,
    settings: Settings,
    run_id: str,
    copy: RawCopy,
    copy_path: Path,
    staged: StagedRows | None = None,
) -> Checked:
    """Read, type, validate and protect ``copy`` a batch at a time (see the module);
    the protected rows go to ``copy_path`` (Parquet) and to ``staged`` when given.
    Raises ExtractError when the file cannot be read (after the rows before it)."""
    validator = _Validator(None, settings.check_workers)
    try:
        validator.plan = plan_validation(spec, settings.expectations_dir)
        return _checked(spec, settings, run_id, copy, copy_path, staged, validator)
    finally:
        validator.close()


def _checked(
    spec: DatasetSpec,
    settings: Settings,
    run_id: str,
    copy: RawCopy,
    copy_path: Path,
    staged: StagedRows | None,
    validator: _Validator,
) -> Checked:
    assert validator.plan is not None
    hash_key = spec_hash_key(spec, settings)  # resolved once, not per batch
    tally = _Tally([], [], Counter(), Counter(), Counter())
    hasher = ContentHasher()
    progress = RowProgress(log, spec.id, "checked")
    uploader = _Uploader(staged) if staged is not None else None
    try:
        with CopyWriter(copy_path) as writer:
            for batch in read_batches(spec, run_id, copy, settings.batch_rows):
                if tally.head is None:
                    tally.head = batch.raw.slice(0, SAMPLE_ROWS)
                for name, (failed, filled) in type_failures(spec, batch.raw, batch.frame).items():
                    tally.failures[name] += failed
                    tally.filled[name] += filled
                validator.submit(batch)
                part = protect_batch(spec, batch.frame, settings, hash_key=hash_key)
                protected, part.frame = part.frame, None
                tally.privacy.append(part)
                assert protected is not None
                hasher.update(protected)
                tally.empty.update(empty_counts(protected))
                writer.write(protected)
                if uploader is not None:
                    uploader.put(protected)
                tally.rows += batch.rows
                progress.step(tally.rows)
        tally.validation = validator.parts()
    finally:
        error = uploader.close() if uploader is not None else None
    progress.finish(tally.rows)
    return Checked(
        rows_in=tally.rows,
        drift=_drift(spec, tally),
        report=_merged_report(spec, settings, validator.plan, tally, run_id, copy),
        privacy=merge_privacy(spec, tally.privacy),
        copy=writer,
        data_version=hasher.hexdigest(),
        empty={name: int(tally.empty[name]) for name in writer.columns},
        staged=staged,
        staging_error=error,
    )


def _drift(spec: DatasetSpec, tally: _Tally) -> SchemaDrift:
    assert tally.head is not None
    failures = {name: (tally.failures[name], tally.filled[name]) for name in tally.filled}
    return schema_drift(spec, tally.head, pd.DataFrame(), failures)


def _merged_report(
    spec: DatasetSpec,
    settings: Settings,
    plan: ValidationPlan,
    tally: _Tally,
    run_id: str,
    copy: RawCopy,
) -> QualityReport:
    """The batches' validation merged; rows whose key hash repeats somewhere are read
    again from the batches holding them (none when every key is distinct)."""
    wanted = duplicate_rows(plan, tally.validation)
    fetched = []
    if wanted:
        for position, batch in enumerate(read_batches(spec, run_id, copy, settings.batch_rows)):
            if position in wanted:
                fetched.append(key_rows(plan, batch, wanted[position]))
    return merge_validation(plan, tally.validation, fetched)
