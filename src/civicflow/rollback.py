"""Roll a dataset back to a kept Parquet version, through the normal atomic publish.

Every published version is kept under ``var/published/<id>/`` with its manifest (rows,
sha256 of the file, the metadata published with it). A rollback republishes those rows
and that metadata as one new version, compare-and-swap on the version live when it
started, so a run publishing meanwhile is never overwritten; then it records the
rollback in the run ledger like any run. Refusals (no kept version, unknown version,
a file changed on disk) happen before anything is written.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

from civicflow import published
from civicflow.ledger import Ledger, RunRecord
from civicflow.pipeline import new_run_id
from civicflow.portals import (
    PortalError,
    PublishedVersion,
    PublishResult,
    TableMetadata,
    get_portal,
)
from civicflow.privatefs import write_private
from civicflow.published import Manifest
from civicflow.settings import Settings
from civicflow.spec import DatasetSpec, find_dataset

log = logging.getLogger("civicflow.rollback")

#: shortest version prefix ``--to`` accepts (shorter ones are too easily ambiguous)
MIN_PREFIX = 6
INCREMENTAL_NOTE = (
    "incremental dataset: its watermark is kept, so the next run adds only rows changed "
    "since the rolled-back run; publish with --full to reread the whole source"
)


class RollbackRefused(Exception):
    """The rollback was refused before anything was written; the message says why (it
    names datasets, versions and files, never a value)."""


@dataclass(frozen=True)
class Rollback:
    """A rollback that went live: what was restored, what it replaced, the ledger record."""

    restored: Manifest
    replaced: PublishedVersion | None
    result: PublishResult
    record: RunRecord


def short(version: str) -> str:
    return f"{version[:12]}…"


def kept_versions(settings: Settings, dataset_id: str) -> list[Manifest]:
    """Every kept version of ``dataset_id``, oldest first (the last one went live last)."""
    return published.versions(settings, dataset_id)


def choose(kept: list[Manifest], live: str | None, to: str | None, dataset_id: str) -> Manifest:
    """The version to restore: the one ``to`` names (a prefix), else the one before ``live``."""
    if not kept:
        raise RollbackRefused(
            f"{dataset_id}: no kept versions to roll back to (none under var/published/{dataset_id}/)"
        )
    target = _named(kept, to, dataset_id) if to else _previous(kept, live, dataset_id)
    if target.version == live:
        raise RollbackRefused(f"{dataset_id}: version {short(target.version)} is already live")
    return target


def _named(kept: list[Manifest], to: str, dataset_id: str) -> Manifest:
    listed = ", ".join(short(m.version) for m in kept)
    if len(to) < MIN_PREFIX:
        raise RollbackRefused(f"{dataset_id}: give at least {MIN_PREFIX} characters of a version")
    found = {m.version: m for m in kept if m.version.startswith(to)}
    if not found:
        raise RollbackRefused(f"{dataset_id}: no kept version {to!r} (kept: {listed})")
    if len(found) > 1:
        raise RollbackRefused(f"{dataset_id}: {to!r} matches several versions: give more of it")
    return next(iter(found.values()))


def _previous(kept: list[Manifest], live: str | None, dataset_id: str) -> Manifest:
    order = [m.version for m in kept]
    if live not in order:
        raise RollbackRefused(
            f"{dataset_id}: the live version is not among the kept ones; name one with --to "
            "(civicflow versions lists them)"
        )
    index = order.index(live)
    if index == 0:
        raise RollbackRefused(f"{dataset_id}: no kept version before the live one")
    return kept[index - 1]


def verify(spec: DatasetSpec, manifest: Manifest) -> None:
    """Refuse a version whose file is gone or changed, or that the spec cannot publish."""
    where = f"{spec.id}: version {short(manifest.version)}"
    if not manifest.path.is_file():
        raise RollbackRefused(f"{where}: its file {manifest.path} is missing")
    if published.file_sha256(manifest.path) != manifest.sha256:
        raise RollbackRefused(
            f"{where}: its rows changed on disk ({manifest.path} no longer matches the "
            "sha256 in its manifest); refusing to publish them"
        )
    if manifest.metadata is None:
        raise RollbackRefused(f"{where}: kept without its metadata, it cannot be restored exactly")
    fields = [f.name for f in spec.published_fields()]
    if manifest.columns != fields:
        raise RollbackRefused(
            f"{where}: its columns are not the ones the spec publishes now "
            f"({', '.join(manifest.columns)} vs {', '.join(fields)}); restore the spec first"
        )


def rollback(
    settings: Settings, dataset_id: str, to: str | None = None, spec: DatasetSpec | None = None
) -> Rollback:
    """Republish the kept version ``to`` names (default: the one before the live one).

    Raises RollbackRefused before any write; a portal failure is recorded as a failed
    run and re-raised (the live table is unchanged: the publish is atomic).
    """
    spec = spec or find_dataset(settings.datasets_dir, dataset_id)
    portal = get_portal(spec.portal.kind, settings)
    live = portal.current_version(spec.table)
    target = choose(kept_versions(settings, spec.id), live.version if live else None, to, spec.id)
    verify(spec, target)
    run_id, started = new_run_id(), datetime.now(UTC)
    # noted first, so a rollback killed mid-upload shows as crashed, like any run
    Ledger(settings.ledger_path).begin(spec.id, run_id, started)
    note = f"rolled back to version {short(target.version)} (published {_when(target)})"
    log.info("%s: %s: republishing %s rows", spec.id, note, f"{target.rows:,}")
    try:
        result = _republish(settings, spec, target, run_id, live)
    except Exception as exc:
        _record(settings, spec, target, run_id, started, None, _failure(exc))
        raise
    record = _record(settings, spec, target, run_id, started, result, note)
    log.info("%s: version %s… live again (%s rows)", spec.id, result.version[:12], result.rows)
    if spec.incremental is not None:
        log.warning("%s: %s", spec.id, INCREMENTAL_NOTE)
    return Rollback(target, live, result, record)


def _when(manifest: Manifest) -> str:
    try:
        return (
            f"{datetime.fromisoformat(manifest.published_at).astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"
        )
    except ValueError:
        return manifest.published_at


def _failure(exc: Exception) -> str:
    """The public ledger reason of a failed rollback: a portal's message names tables and
    versions only; any other error's message stays in the log."""
    if isinstance(exc, PortalError):
        return f"rollback failed: portal: {exc}"
    return f"rollback failed: {type(exc).__name__} (its message is in the log)"


def _republish(
    settings: Settings,
    spec: DatasetSpec,
    target: Manifest,
    run_id: str,
    live: PublishedVersion | None,
) -> PublishResult:
    """Publish the version's rows and metadata (base = the version live now), then make
    its Parquet copy the latest again."""
    frame = pq.read_table(target.path).to_pandas()
    assert target.metadata is not None  # verify() refused a version without it
    metadata = TableMetadata(**target.metadata)
    data_version = target.data_version or published.content_version(frame)
    result = get_portal(spec.portal.kind, settings).publish(
        spec.table,
        frame,
        fields=spec.published_fields(),
        primary_key=[k for k in spec.primary_key if k in frame.columns],
        version=data_version,
        run_id=run_id,
        metadata=metadata,
        base=live,
    )
    _keep_copy(settings, spec, target, result, frame)
    return result


def _keep_copy(
    settings: Settings,
    spec: DatasetSpec,
    target: Manifest,
    result: PublishResult,
    frame: pd.DataFrame,
) -> None:
    """The restored version is live again: its manifest says when, and becomes latest.

    The file and its run stay the original ones (the run whose checks passed these rows);
    only a portal that gave the restored rows another version id gets a new copy.
    """
    when = result.published_at or datetime.now(UTC).isoformat(timespec="seconds")
    if result.version != target.version:
        published.write_version(
            settings,
            spec.id,
            frame,
            result.version,
            target.run_id,
            data_version=target.data_version,
            metadata=target.metadata,
            published_at=when,
        )
        return
    again = dataclasses.replace(target, published_at=when)
    text = json.dumps(again.to_dict(), indent=2, default=str).encode()
    folder = target.path.parent
    write_private(folder / f"{target.version}.json", text)
    write_private(folder / "latest.json", text)


def _record(
    settings: Settings,
    spec: DatasetSpec,
    target: Manifest,
    run_id: str,
    started: datetime,
    result: PublishResult | None,
    reason: str,
) -> RunRecord:
    """The rollback in the run ledger; the original run's checks and reports stand for
    the restored rows (they are the rows those checks passed)."""
    ledger = Ledger(settings.ledger_path)
    original = next((r for r in ledger.runs(spec.id) if r.run_id == target.run_id), None)
    evidence: dict[str, Any] = {}
    if original is not None and result is not None:
        evidence = {
            k: getattr(original, k)
            for k in (
                "critical_passed",
                "warning_passed",
                "warning_failed",
                "privacy_findings",
                "report_path",
                "privacy_report_path",
            )
        }
    record = RunRecord(
        dataset_id=spec.id,
        run_id=run_id,
        started_at=started,
        finished_at=datetime.now(UTC),
        outcome="published" if result is not None else "failed",
        reason=reason,
        rows_in=target.rows,
        rows_out=result.rows if result else None,
        portal_version=result.version if result else None,
        **evidence,
    )
    ledger.record(record)
    return record
