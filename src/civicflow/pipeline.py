"""The stages chained as plain functions: extract → validate → protect → publish.

``run_dataset`` is the one orchestration. Flows pass a ``wrap`` callable that turns
each stage into a Prefect task, so the Prefect UI shows every stage while the logic
(and its tests) stays here, Prefect-free. Every run ends in the ledger, whatever
its outcome; nothing reaches the portal unless every critical check passed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import secrets
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import EllipsisType
from typing import Any, TypeAlias, TypeVar

import numpy as np
import pandas as pd

from civicflow import published
from civicflow.changes import DiffError, RowDiff, diff
from civicflow.ledger import Ledger, Outcome, RunRecord, VersionSummary
from civicflow.portals import (
    Portal,
    PortalConflict,
    PortalError,
    PublishedVersion,
    PublishPlan,
    PublishResult,
    RowChanges,
    StagedRows,
    StagingPortal,
    TableMetadata,
    get_portal,
    published_version,
)
from civicflow.privatefs import write_private
from civicflow.published import empty_counts
from civicflow.quality import quarantines
from civicflow.quality.drift import SchemaDrift, schema_drift
from civicflow.quality.quarantine import quarantine_bad_rows
from civicflow.settings import Settings
from civicflow.sources import (
    Extract,
    ExtractError,
    RawCopy,
    SourceUnchanged,
    copy_input,
    extract,
    read_copy,
)
from civicflow.sources.http import commit_http_validators, forget_http_validators
from civicflow.sources.incremental import later, newer_than, watermark_of
from civicflow.sources.transforms import TransformError
from civicflow.spec import DatasetSpec, SpecError, find_dataset
from civicflow.spec.loader import require_suite
from civicflow.streaming import Checked, check_batches, streams

log = logging.getLogger("civicflow.pipeline")

F = TypeVar("F", bound=Callable[..., Any])
Wrap = Callable[[str, F], F]


def _no_wrap(name: str, fn: F) -> F:
    return fn


def new_run_id(now: datetime | None = None) -> str:
    """Sortable, unique: UTC timestamp plus random suffix (e.g. 20261123T094512Z-3fa9c1)."""
    now = now or datetime.now(UTC)
    return f"{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


@dataclass
class RunOutcome:
    """How a run ended, with the ledger record and the reports a steward reads."""

    outcome: Outcome
    reason: str
    record: RunRecord
    report_path: Path | None = None
    privacy_report_path: Path | None = None
    result: PublishResult | None = None

    @property
    def ok(self) -> bool:
        return self.outcome in ("published", "unchanged")


class Rejected(Exception):
    """The input was refused (bad file, failed critical check, privacy finding)."""


def report_paths(settings: Settings, dataset_id: str, run_id: str) -> tuple[Path, Path]:
    folder = settings.reports_dir / dataset_id
    return folder / f"{run_id}.json", folder / f"{run_id}.privacy.json"


#: versions whose summaries a publish sends in its metadata (the catalog's history)
HISTORY = 20

#: the largest share of the live table's rows a republish sends as changes (rows added,
#: changed and deleted, by primary key) instead of replacing the table: above a fifth,
#: writing every row into a fresh table costs about as much as upserting and deleting
#: that many by key, and keeps the storage order of a fresh load
INCREMENTAL_MAX_SHARE = 0.2


#: a table's rows: a frame, or the Parquet file holding them (a streamed run's copy)
Rows: TypeAlias = pd.DataFrame | Path


def _shape(rows: Rows | None) -> tuple[int, list[str]]:
    """How many rows, and which columns (none for None); a file's from its footer."""
    if rows is None:
        return 0, []
    if isinstance(rows, pd.DataFrame):
        return len(rows), [str(c) for c in rows.columns]
    import pyarrow.parquet as pq

    meta = pq.ParquetFile(rows).metadata
    return meta.num_rows, list(meta.schema.to_arrow_schema().names)


def dictionary(spec: DatasetSpec, empty: dict[str, int] | None = None) -> list[dict[str, Any]]:
    """The published fields in the spec's order, structured for the catalog's data
    dictionary: name, type, unit, description and the privacy rule with its reason;
    ``empty``, when given, the count of empty values in the published rows."""
    return [
        {
            "name": f.name,
            "type": f.type,
            "unit": f.unit,
            "description": f.description,
            "privacy": (
                {"rule": f.privacy.rule, "method": f.privacy.method, "reason": f.privacy.reason}
                if f.privacy
                else None
            ),
            **({"empty": empty[f.name]} if empty is not None and f.name in empty else {}),
        }
        for f in spec.published_fields()
    ]


def dropped_fields(spec: DatasetSpec) -> list[dict[str, str]]:
    """Fields the privacy rules keep off the portal, with why (the catalog's privacy note)."""
    return [
        {"name": f.name, "reason": f.privacy.reason}
        for f in spec.fields
        if f.privacy and f.privacy.rule == "drop"
    ]


def table_metadata(
    spec: DatasetSpec,
    column_notes: dict[str, str] | None = None,
    quality: dict[str, int] | None = None,
    *,
    empty: dict[str, int] | None = None,
    history: list[dict[str, Any]] | None = None,
) -> TableMetadata:
    """Portal metadata from the spec: the dataset page and its data dictionary.

    ``quality``: the validation counts of the run that publishes (``_counts``: passed and
    failed checks per severity, counts only), shown as the catalog's quality status.
    ``empty``: empty values per field of the published rows (``empty_counts``), in the
    dictionary. ``history``: the recent versions' summaries, newest first
    (``VersionSummary.history_entry``), the catalog's version history.
    """
    column_notes = column_notes or {}
    columns = {}
    for f in spec.published_fields():
        text = f.description + (f" Unit: {f.unit}." if f.unit else "")
        if f.privacy:
            text += f" Privacy: {f.privacy.rule}{' (' + f.privacy.method + ')' if f.privacy.method else ''} — {f.privacy.reason}"
        if f.name in column_notes:
            text += f" {column_notes[f.name]}"
        columns[f.name] = text
    review = spec.privacy.review
    return TableMetadata(
        title=spec.title,
        description=spec.description,
        license=spec.license,
        source=spec.department,
        columns=columns,
        extra={
            "steward": spec.steward.name,
            "steward_email": spec.steward.email,
            "update_frequency": spec.update_frequency,
            "category": spec.category,
            "tags": list(spec.tags),
            "provenance": spec.provenance,
            "privacy_review": review.model_dump() if review else None,
            "department": spec.department,
            "access_level": spec.access_level,
            "record_date": spec.record_date,
            "title_es": spec.title_es,
            "description_es": spec.description_es,
            "dictionary": dictionary(spec, empty),
            "dropped_fields": dropped_fields(spec),
            **({"quality": dict(quality)} if quality is not None else {}),
            **({"history": [dict(h) for h in history]} if history is not None else {}),
        },
    )


def versioned_metadata(
    spec: DatasetSpec,
    settings: Settings,
    run_id: str,
    rows: Rows | None,
    data_version: str,
    base: PublishedVersion | None,
    column_notes: dict[str, str] | None = None,
    quality: dict[str, int] | None = None,
    portal: Portal | None = None,
    diffed: RowDiff | None | EllipsisType = ...,
    *,
    empty: dict[str, int] | None = None,
) -> tuple[TableMetadata, VersionSummary | None]:
    """The metadata a publish of ``rows`` (the whole table after it; None: unknown) sends:
    the spec's, the dictionary's empty counts, and the history with this version's summary.

    Nothing time-varying is added unless the publish makes a new version: when the live
    version ``base`` already holds these rows with this metadata and the history it went
    live with, that exact metadata is returned (and no summary), so an unchanged re-run
    stays unchanged. Otherwise the summary (rows added/changed/deleted against the kept
    Parquet copy of ``base``, this run's checks) heads the history, followed by the ones
    the ledger and the live metadata hold, newest first, at most ``HISTORY``.
    ``diffed``: the diff of ``rows`` against the base's kept copy when the caller made
    it already (None: tried, not comparable), so the rows are compared once.
    ``rows`` may be a Parquet file of them (a streamed run's copy), with ``empty`` its
    empty counts (``empty_counts`` of the rows; counted here from a frame).
    """
    if empty is None and isinstance(rows, pd.DataFrame):
        empty = empty_counts(rows)
    live = _live_metadata(settings, spec, base, portal)
    live_history = _history_of(live)
    same = table_metadata(spec, column_notes, quality, empty=empty, history=live_history)
    if base is not None and published_version(data_version, same) == base.version:
        return same, None
    summary = _version_summary(spec, settings, run_id, rows, data_version, base, quality, diffed)
    recorded = Ledger(settings.ledger_path).versions(spec.id, spec.portal.kind, limit=HISTORY)
    seen: set[Any] = set()
    history = []
    for entry in [summary.history_entry(), *(r.history_entry() for r in recorded)] + (
        live_history or []
    ):
        if entry.get("run_id") not in seen:
            seen.add(entry.get("run_id"))
            history.append(entry)
    history.sort(key=lambda e: str(e.get("run_id") or ""), reverse=True)  # ids sort by time
    metadata = table_metadata(spec, column_notes, quality, empty=empty, history=history[:HISTORY])
    return metadata, summary


def _live_metadata(
    settings: Settings, spec: DatasetSpec, base: PublishedVersion | None, portal: Any = None
) -> dict[str, Any] | None:
    """The metadata the live version ``base`` went live with: its kept copy's manifest has
    it; else (the copy lags, or another var dir published it) the portal, when it serves
    its live state (the Datasette portal's ``live_state``, without rows)."""
    if base is None:
        return None
    manifest = published.latest(settings, spec.id)
    if manifest is not None and manifest.version == base.version:
        return manifest.metadata
    live_state = getattr(portal, "live_state", None)
    if live_state is None:
        return None
    state = live_state(spec.table, with_rows=False)
    if state.version is None or state.version.version != base.version:
        return None
    return dict(state.metadata) if isinstance(state.metadata, dict) else None


def _history_of(metadata: dict[str, Any] | None) -> list[dict[str, Any]] | None:
    history = ((metadata or {}).get("extra") or {}).get("history")
    if not isinstance(history, list):
        return None
    return [h for h in history if isinstance(h, dict)]


def _kept_rows(settings: Settings, dataset_id: str, data_version: str | None) -> Path | None:
    """The kept Parquet copy holding the rows ``data_version`` (the latest first)."""
    manifest = _kept_manifest(settings, dataset_id, data_version)
    return manifest.path if manifest is not None else None


def _kept_manifest(
    settings: Settings, dataset_id: str, data_version: str | None
) -> published.Manifest | None:
    """The manifest of a kept Parquet copy holding the rows ``data_version``."""
    if data_version is None:
        return None
    latest = published.latest(settings, dataset_id)
    kept = [latest] if latest is not None else []
    kept += reversed(published.versions(settings, dataset_id))
    return next((m for m in kept if m.data_version == data_version and m.path.is_file()), None)


def _version_summary(
    spec: DatasetSpec,
    settings: Settings,
    run_id: str,
    rows: Rows | None,
    data_version: str,
    base: PublishedVersion | None,
    quality: dict[str, int] | None,
    diffed: RowDiff | None | EllipsisType = ...,
) -> VersionSummary:
    """This version's rows added, changed and deleted since ``base`` (None when the rows,
    or a kept copy of the base's rows, are unknown), and the run's checks.
    ``diffed``: that comparison when already made (None: made, and it failed)."""
    counts: dict[str, int | None] = {"added": None, "changed": None, "deleted": None}
    count, columns = _shape(rows)
    key = [k for k in spec.primary_key if k in columns]
    if rows is not None and base is None:
        counts = {"added": count, "changed": 0 if key else None, "deleted": 0}
    elif rows is not None and base is not None and base.data_version == data_version:
        counts = {"added": 0, "changed": 0 if key else None, "deleted": 0}
    elif rows is not None and base is not None and isinstance(diffed, RowDiff):
        counts = {"added": diffed.added, "changed": diffed.changed, "deleted": diffed.deleted}
    elif rows is not None and base is not None and diffed is None:
        pass  # compared already, and the rows could not be (logged there)
    elif rows is not None and base is not None:
        old = _kept_rows(settings, spec.id, base.data_version)
        if old is None:
            log.warning("%s: no kept copy of the live rows: the history counts no changes", spec.id)
        else:
            try:
                found = diff(old, rows, key, listed=False)
            except DiffError as exc:
                log.warning("%s: rows not compared for the history: %s", spec.id, exc)
            else:
                counts = {"added": found.added, "changed": found.changed, "deleted": found.deleted}
    passed = total = None
    if quality:
        passed = sum(int(v) for k, v in quality.items() if k.endswith("_passed"))
        total = sum(int(v) for v in quality.values())
    return VersionSummary(
        dataset_id=spec.id,
        portal=spec.portal.kind,
        run_id=run_id,
        data_version=data_version,
        checks_passed=passed,
        checks_total=total,
        added=counts["added"],
        changed=counts["changed"],
        deleted=counts["deleted"],
    )


def _record_version(
    settings: Settings, summary: VersionSummary | None, result: PublishResult
) -> None:
    """Keep the summary in the ledger once its version went live (this run made it)."""
    if summary is None or not result.changed or result.run_id not in (None, summary.run_id):
        return
    Ledger(settings.ledger_path).record_version(
        dataclasses.replace(
            summary,
            portal_version=result.version,
            published_at=result.published_at,
            rows=result.rows,
        )
    )


# -- stages: plain functions, each testable alone --------------------------------


def stored_watermark(settings: Settings, spec: DatasetSpec) -> str | None:
    """Where an incremental dataset's last good run stopped (None: read it whole)."""
    if spec.incremental is None:
        return None
    return Ledger(settings.ledger_path).watermark(spec.id, spec.incremental.cursor)


def advance_watermark(
    settings: Settings,
    spec: DatasetSpec,
    frame: pd.DataFrame,
    since: str | None,
    run_id: str,
    held: pd.DataFrame | None = None,
) -> None:
    """After a good run only: the largest cursor it published becomes the watermark.

    Rows ``held`` back (quarantined) must come again: the watermark stays below the
    smallest of their cursors, so the next run reads them (and what follows) again.
    """
    if spec.incremental is None:
        return
    cursor = spec.incremental.cursor
    if held is not None and held[cursor].notna().any():
        frame = frame[frame[cursor] < held[cursor].min()]
    value = later(since, watermark_of(spec, frame), spec)
    if value is not None and value != since:
        Ledger(settings.ledger_path).advance_watermark(
            spec.id, spec.incremental.cursor, value, run_id
        )
        log.info("%s: watermark %s = %s", spec.id, spec.incremental.cursor, value)


@dataclass(frozen=True)
class NotExtracted:
    """Why extract produced nothing to check: the source is unchanged, or its input was
    refused. A value, not an exception: an expected rejection is an outcome, so the
    stage's task completes and no traceback is logged for it."""

    unchanged: bool
    error: Exception


def extract_stage(
    spec: DatasetSpec,
    settings: Settings,
    run_id: str,
    source_path: Path | str | None,
    since: str | None = None,
) -> Extract | NotExtracted:
    """Copy and read the source; an incremental run keeps only rows above ``since``."""
    try:
        ext = extract(spec, settings, run_id, source_path, since=since)
    except SourceUnchanged as exc:
        return NotExtracted(unchanged=True, error=exc)
    except (ExtractError, TransformError) as exc:
        return NotExtracted(unchanged=False, error=exc)
    if since is not None:
        ext = newer_than(spec, ext, since)
    log.info(
        "%s: extracted %s rows from %s (sha256 %s…), raw copy %s",
        spec.id,
        f"{ext.rows:,}",
        ext.raw_path.name,
        ext.sha256[:12],
        ext.raw_path,
    )
    return ext


def validate_stage(spec: DatasetSpec, ext: Extract, settings: Settings) -> Any:
    from civicflow.quality import validate

    report = validate(spec, ext, settings.expectations_dir)
    path, _ = report_paths(settings, spec.id, ext.run_id)
    report.write(path)
    log.info("%s: %s (report %s)", spec.id, report.summary(), path)
    return report


def protect_stage(spec: DatasetSpec, frame: pd.DataFrame, settings: Settings, run_id: str) -> Any:
    from civicflow.privacy import protect

    result = protect(spec, frame, settings)
    _, path = report_paths(settings, spec.id, run_id)
    result.report.write(path)
    log.info("%s: privacy: %s (report %s)", spec.id, result.report.summary(), path)
    return result


def publish_stage(
    spec: DatasetSpec,
    frame: pd.DataFrame,
    settings: Settings,
    run_id: str,
    column_notes: dict[str, str],
    since: str | None = None,
    quality: dict[str, int] | None = None,
) -> PublishResult:
    """Publish the rows and metadata as one version; keep the Parquet copy in step.

    An incremental run (``since`` set, table live) upserts its rows by primary key.
    Otherwise ``frame`` is the whole new table: when only a few of its rows differ from
    the live ones (see ``_changes_to_send``) just those are sent (``apply_changes``),
    else the table is replaced. Both give the same version, Parquet copy and history.
    Refused (PortalConflict, naming the other run) when another run published this
    table after this run began; a refused or failed publish leaves the live table as it was.
    """
    portal = get_portal(spec.portal.kind, settings)
    base = portal.current_version(spec.table)
    if since is not None and base is not None and base.data_version is not None:
        return _upsert(spec, frame, settings, run_id, base, column_notes, quality)
    data_version = published.content_version(frame)
    diffed = _live_diff(spec, settings, frame, data_version, base)
    metadata, summary = versioned_metadata(
        spec, settings, run_id, frame, data_version, base, column_notes, quality, portal, diffed
    )
    if base is not None and base.version != published_version(data_version, metadata):
        _refuse_if_published_since_start(spec, base, run_id)
    changes = _changes_to_send(spec, settings, frame, base, diffed)
    if changes is not None:
        result = _apply(portal, spec, changes, data_version, run_id, metadata, base)
    else:
        result = portal.publish(
            spec.table,
            frame,
            fields=spec.published_fields(),
            primary_key=[k for k in spec.primary_key if k in frame.columns],
            version=data_version,
            run_id=run_id,
            metadata=metadata,
            base=base,
        )
    _sync_parquet(spec, frame, settings, result, data_version, metadata)
    _record_version(settings, summary, result)
    _log_published(spec, result)
    return result


def _live_diff(
    spec: DatasetSpec,
    settings: Settings,
    frame: Rows,
    data_version: str,
    base: PublishedVersion | None,
) -> RowDiff | None | EllipsisType:
    """``frame`` against the kept Parquet copy of the live rows, by primary key, listing
    the changes: what both the history counts and a changes-only publish need, computed
    once. ``...`` when there is nothing to compare by key (no key, no live version, the
    same rows, no kept copy: the history works it out as before); None when the rows
    could not be compared (logged)."""
    key = list(spec.primary_key)
    if not key or any(k not in _shape(frame)[1] for k in key):
        return ...
    if base is None or base.data_version is None or base.data_version == data_version:
        return ...
    old = _kept_rows(settings, spec.id, base.data_version)
    if old is None:
        return ...
    try:
        return diff(old, frame, key, listed=True)
    except DiffError as exc:
        log.warning("%s: rows not compared with the live version: %s", spec.id, exc)
        return None


def _changes_to_send(
    spec: DatasetSpec,
    settings: Settings,
    frame: Rows,
    base: PublishedVersion | None,
    diffed: RowDiff | None | EllipsisType,
) -> RowChanges | None:
    """The rows to upsert and the keys to delete when publishing only the changes gives
    the table a full publish of ``frame`` would; None: replace the table.

    Only the changes go when the table is live with a kept copy of exactly its rows
    (the diff was made against it), the published fields (names, order, types) are the
    ones that copy went live with, and at least one but at most ``INCREMENTAL_MAX_SHARE``
    of the live rows are to be sent. The row order is part of the version (the content
    hash covers it) and readers see it (the query API and downloads read the table in
    storage order). A portal updates an upserted row whose key is live where it stands
    and appends the others. So when ``frame`` is the live rows changed in place
    (``RowDiff.in_place``: kept rows in the live order, new rows last, as a source that
    edits a 311 request's status gives them) only the added and changed rows go, plus
    the deleted keys. Otherwise every new row goes from the first that is not an
    unchanged live row in the live order (``RowDiff.appended``), those that are live
    rows deleted first so that they are appended too: a source that lists changed and
    new rows last (by update time) sends only those. Too many rows to send: the full
    path. Logged either way, counts only.
    """
    if base is None or base.data_version is None or not spec.primary_key:
        return None
    manifest = _kept_manifest(settings, spec.id, base.data_version)
    fields = [(f.name, f.type) for f in spec.published_fields()]
    why: str | None = None
    if not isinstance(diffed, RowDiff):
        if diffed is None or manifest is None:  # else: the same rows, nothing to diff
            why = "rows not comparable" if diffed is None else "no kept copy of the live rows"
            log.info("%s: full publish (%s)", spec.id, why)
        return None
    changed = diffed.added + (diffed.changed or 0) + diffed.deleted
    in_order = diffed.in_order if diffed.in_order is not None else 0
    count, columns = _shape(frame)
    sent = changed if diffed.in_place else count - in_order + diffed.deleted
    if manifest is None or diffed.rows_before != base.rows or manifest.rows != base.rows:
        why = "the kept copy does not hold the live rows"
    elif _fields_of(manifest) != fields or columns != [n for n, _ in fields]:
        why = "the published fields changed"
    elif sent == 0:
        why = "the same rows in another form"
    elif sent > INCREMENTAL_MAX_SHARE * base.rows:
        why = (
            f"{changed:,} rows changed, {sent:,} to send"
            f"{' (in place)' if diffed.in_place else ' to keep the row order'}: above "
            f"{INCREMENTAL_MAX_SHARE:.0%} of {base.rows:,}"
        )
    if why is not None:
        log.info("%s: full publish (%s)", spec.id, why)
        return None
    log.info(
        "%s: changes-only publish: %s added, %s changed, %s deleted of %s live rows (%s)",
        spec.id,
        f"{diffed.added:,}",
        f"{diffed.changed or 0:,}",
        f"{diffed.deleted:,}",
        f"{base.rows:,}",
        "changed in place"
        if diffed.in_place
        else f"{sent - changed:,} unchanged rows sent again to keep the row order",
    )
    if diffed.in_place:
        upserts = _rows_at(frame, diffed.positions("added", "changed"))
        return RowChanges(upserts=upserts, deletes=diffed.deletes())
    tail = _rows_at(frame, np.arange(in_order, count))  # RowDiff.appended, from a file too
    moved = ~np.isin(np.arange(in_order, count), diffed.positions("added"))
    deletes = diffed.deletes()
    if moved.any():  # out of place: deleted first, so the upsert appends them
        keys = tail[moved][list(diffed.key)].reset_index(drop=True)
        deletes = pd.concat([deletes, keys], ignore_index=True) if len(deletes) else keys
    return RowChanges(upserts=tail, deletes=deletes)


def _rows_at(rows: Rows, positions: Any) -> pd.DataFrame:
    """The rows at these 0-based positions, in their order; a Parquet file is read a
    batch at a time (memory holds the rows asked for), dtypes as the file keeps them."""
    positions = np.asarray(positions, dtype=np.int64)
    if isinstance(rows, pd.DataFrame):
        return rows.iloc[positions]
    import pyarrow as pa
    import pyarrow.parquet as pq

    source = pq.ParquetFile(rows)
    taken, start = [], 0
    for batch in source.iter_batches(batch_size=65_536):
        here = positions[(positions >= start) & (positions < start + batch.num_rows)]
        if len(here):
            taken.append(batch.take(pa.array(here - start)))
        start += batch.num_rows
    table = pa.Table.from_batches(taken, schema=source.schema_arrow)
    return table.to_pandas().reset_index(drop=True)


def _fields_of(manifest: published.Manifest) -> list[tuple[Any, Any]]:
    """The published fields (name, type) a kept copy went live with (its dictionary)."""
    extra = (manifest.metadata or {}).get("extra") or {}
    return [
        (f.get("name"), f.get("type")) for f in extra.get("dictionary") or [] if isinstance(f, dict)
    ]


def _upsert(
    spec: DatasetSpec,
    frame: pd.DataFrame,
    settings: Settings,
    run_id: str,
    base: PublishedVersion,
    column_notes: dict[str, str],
    quality: dict[str, int] | None,
) -> PublishResult:
    """Send an incremental run's rows as upserts; the Parquet copy gets them too.

    The new data version is the content hash of the whole table after the upserts (the
    Parquet copy of the base merged with them), as a full publish of it would be; when
    the copy is not the base version it chains the base with the changes instead.
    """
    assert base.data_version is not None
    _refuse_if_published_since_start(spec, base, run_id)
    key = list(spec.primary_key)
    copy = published.read_latest(settings, spec.id)
    merged = None
    if copy is not None and copy[0].version == base.version:
        # the whole table after the upserts: the metadata's empty counts and history
        merged = (
            copy[1]
            if frame.empty
            else published.upserted(copy[1], frame.reset_index(drop=True), key)
        )
    if frame.empty:
        data_version = base.data_version
    elif merged is not None:
        data_version = published.content_version(merged)
    else:
        log.warning(
            "%s: the Parquet copy is not the live version; publish once with --full to rewrite it",
            spec.id,
        )
        data_version = published.chained_version(base.data_version, frame)
    portal = get_portal(spec.portal.kind, settings)
    metadata, summary = versioned_metadata(
        spec, settings, run_id, merged, data_version, base, column_notes, quality, portal
    )
    changes = RowChanges(upserts=frame, deletes=frame.iloc[:0][key])
    result = _apply(portal, spec, changes, data_version, run_id, metadata, base)
    if merged is not None and published.lags(settings, spec.id, result.version):
        _write_copy(spec, merged, settings, result, data_version, metadata)
    _record_version(settings, summary, result)
    _log_published(spec, result)
    return result


def _log_published(spec: DatasetSpec, result: PublishResult) -> None:
    verb = (
        f"published ({result.change})"
        if result.changed
        else "unchanged (portal already holds this version)"
    )
    log.info(
        "%s: %s: %s rows, version %s… at %s",
        spec.id,
        verb,
        f"{result.rows:,}",
        result.version[:12],
        result.url,
    )


def _refuse_if_published_since_start(
    spec: DatasetSpec, live: PublishedVersion, run_id: str
) -> None:
    """A run that began before the live version was published must not replace it.

    Run ids start with the run's start time to the second; a version published in a
    later second than that was published after this run began.
    """
    started = _run_started(run_id)
    when = _parse_time(live.published_at)
    if started is None or when is None or live.run_id == run_id:
        return
    if when.replace(microsecond=0) > started:
        raise PortalConflict(
            f"{spec.table}: the live version changed since run {run_id} began "
            f"({started.isoformat()}): run {live.run_id} published version "
            f"{live.version[:12]}… at {live.published_at}; run {run_id} refused, "
            "the live table is unchanged",
            live.run_id,
        )


def _run_started(run_id: str) -> datetime | None:
    try:
        return datetime.strptime(run_id.split("-")[0], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    except ValueError:
        return None


def _parse_time(text: str | None) -> datetime | None:
    try:
        return datetime.fromisoformat(text) if text else None
    except ValueError:
        return None


def _sync_parquet(
    spec: DatasetSpec,
    frame: pd.DataFrame,
    settings: Settings,
    result: PublishResult,
    data_version: str,
    metadata: TableMetadata,
) -> None:
    """Write the Parquet copy when the portal's version is not the latest copy.

    ``frame`` holds exactly the live rows here (published now, or already live), so
    a copy that lags after a failure past the swap is rewritten by the next run.
    """
    if not published.lags(settings, spec.id, result.version):
        return
    if not result.changed:
        log.warning(
            "%s: the Parquet copy lagged the portal (a failure after the swap?); rewriting "
            "version %s…",
            spec.id,
            result.version[:12],
        )
    _write_copy(spec, frame, settings, result, data_version, metadata)


def _write_copy(
    spec: DatasetSpec,
    frame: pd.DataFrame,
    settings: Settings,
    result: PublishResult,
    data_version: str,
    metadata: TableMetadata,
) -> None:
    published.write_version(
        settings,
        spec.id,
        frame,
        result.version,
        result.run_id or "",
        data_version=data_version,
        metadata=dataclasses.asdict(metadata),
        published_at=result.published_at,
    )


# -- orchestration ----------------------------------------------------------------


def _check_ready(spec: DatasetSpec, settings: Settings) -> None:
    from civicflow.privacy import check_ready

    check_ready(spec, settings)


#: the validation counts a publish carries into the catalog's quality status
_QUALITY_KEYS = ("critical_passed", "critical_failed", "warning_passed", "warning_failed")


def _counts(report: Any) -> dict[str, int]:
    counts = getattr(report, "counts", {}) or {}
    out = {}
    for severity in ("critical", "warning"):
        c = counts.get(severity, {})
        out[f"{severity}_passed"] = int(c.get("passed", 0))
        out[f"{severity}_failed"] = int(c.get("failed", 0))
    return out


def _public_errors() -> tuple[type[Exception], ...]:
    """Errors whose messages name files, keys and fields only: fit for the public reason."""
    from civicflow.privacy.errors import PrivacyError  # privacy is imported lazily

    return (SpecError, PortalError, PrivacyError)


def _failure_reason(kind: str, exc: Exception) -> str:
    """The public ledger reason of a failed run.

    Any exception not in ``_public_errors()`` (a library's) may quote a data value, so
    the reason names its type; the message goes to the private report and the log.
    """
    if isinstance(exc, _public_errors()):
        return f"{kind}: {exc}"
    return f"{kind}: unexpected error (its message is in the run's private report and log)"


def _prune(settings: Settings, dataset_id: str) -> None:
    """Apply retention after every run, so an hourly schedule keeps the disk bounded.

    It runs after the ledger (and the Parquet copy) are written, so the live version's
    run is known and kept. A failure to prune is logged, never the run's outcome.
    """
    from civicflow.retention import prune_dataset

    try:
        result = prune_dataset(settings, dataset_id)
    except OSError as exc:
        log.warning("%s: retention could not prune old run files: %s", dataset_id, exc)
        return
    if result.files:
        log.info("%s: retention: %s", dataset_id, result.summary())


def _error_report(path: Path, dataset_id: str, run_id: str, stage: str, exc: Exception) -> str:
    """Write why a run stopped to its private report; ``detail`` may quote the source."""
    body = {
        "dataset_id": dataset_id,
        "run_id": run_id,
        "passed": False,
        "stage": stage,
        "error": str(exc),
        "detail": getattr(exc, "detail", None),
    }
    write_private(path, json.dumps(body, indent=2, ensure_ascii=False))
    return str(path)


def input_key(spec: DatasetSpec, settings: Settings, sha256: str, since: str | None) -> str:
    """sha256 of everything a run's result depends on: the raw copy, the spec, the suite.

    Equal keys mean the same input judged by the same rules: the run can end
    ``unchanged`` before any check, provided the portal still holds that run's version.
    """
    suite = require_suite(spec, settings.expectations_dir).read_bytes()
    digest = hashlib.sha256()
    for part in (sha256, spec.model_dump_json(), hashlib.sha256(suite).hexdigest(), since or ""):
        digest.update(part.encode() + b"\0")
    return digest.hexdigest()


def _same_input_still_live(settings: Settings, spec: DatasetSpec, key: str) -> RunRecord | None:
    """The last good run with this input key, if its version is still the live one."""
    ledger = Ledger(settings.ledger_path)
    last = next(
        (r for r in ledger.runs(spec.id, limit=20) if r.outcome in ("published", "unchanged")),
        None,
    )
    if last is None or last.input_key != key or last.portal_version is None:
        return None
    live = get_portal(spec.portal.kind, settings).current_version(spec.table)
    return last if live is not None and live.version == last.portal_version else None


def run_dataset(
    settings: Settings,
    dataset_id: str,
    source_path: Path | str | None = None,
    spec: DatasetSpec | None = None,
    wrap: Wrap = _no_wrap,
    *,
    portal: str | None = None,
    full: bool = False,
) -> RunOutcome:
    """Run one dataset end to end and record it. Spec errors raise SpecError (usage error).

    ``portal`` publishes to that portal kind instead of the spec's; ``full`` reads an
    incremental dataset whole, ignoring its watermark. Bad input, failed critical checks
    and privacy findings end as ``rejected``; anything unexpected (portal down, a bug)
    ends as ``failed`` and is re-raised after it is recorded, so no exception is swallowed.
    """
    spec = (spec or find_dataset(settings.datasets_dir, dataset_id)).targeting(portal)
    run = _Run(settings, spec, wrap)
    run.begin()
    try:
        return run.execute(source_path, full)
    except Exception as exc:
        run.fail(exc)
        raise


class _Run:
    """One run's state (stats, report paths) and how it ends; see ``run_dataset``."""

    def __init__(self, settings: Settings, spec: DatasetSpec, wrap: Wrap) -> None:
        self.settings, self.spec, self.wrap = settings, spec, wrap
        self.run_id = new_run_id()
        self.started = datetime.now(UTC)
        self.report_path, self.privacy_path = report_paths(settings, spec.id, self.run_id)
        self.stats: dict[str, Any] = {}
        self.paths: dict[str, Any] = {"report_path": None, "privacy_report_path": None}

    def begin(self) -> None:
        """Record earlier runs of this dataset that died as failed, then this run's start."""
        ledger = Ledger(self.settings.ledger_path)
        from civicflow.alerts import notify_run

        for crashed in ledger.record_crashes(self.spec.id, self.started):
            log.warning("%s: run %s %s", self.spec.id, crashed.run_id, crashed.reason)
            # a streamed run killed mid-check leaves its checked rows: nobody else will
            spool_path(self.settings, self.spec.id, crashed.run_id).unlink(missing_ok=True)
            notify_run(self.settings, self.spec, crashed)
        ledger.begin(self.spec.id, self.run_id, self.started)

    def finish(
        self, outcome: Outcome, reason: str, result: PublishResult | None = None, **extra: Any
    ) -> RunOutcome:
        record = RunRecord(
            dataset_id=self.spec.id,
            run_id=self.run_id,
            started_at=self.started,
            finished_at=datetime.now(UTC),
            outcome=outcome,
            reason=reason,
            **self.paths,
            **self.stats,
            **extra,
        )
        _write_report_page(self.spec.id, self.paths["report_path"])
        Ledger(self.settings.ledger_path).record(record)
        if outcome in ("published", "unchanged"):
            # what was pulled is now what the portal holds: an HTTP source's next
            # conditional request may skip it (a rejected download is fetched again)
            commit_http_validators(self.settings, self.spec)
        _prune(self.settings, self.spec.id)
        from civicflow.alerts import notify_run  # lazy: smtplib/httpx only when runs finish

        notify_run(self.settings, self.spec, record)
        paths = [Path(p) if p else None for p in self.paths.values()]
        return RunOutcome(outcome, reason, record, paths[0], paths[1], result)

    def fail(self, exc: Exception) -> None:
        kind = (
            "portal"
            if isinstance(exc, PortalError)
            else "spec"
            if isinstance(exc, SpecError)
            else type(exc).__name__
        )
        log.error("%s: FAILED (%s): %s", self.spec.id, kind, exc)
        log.debug("%s", traceback.format_exc())
        if not isinstance(exc, _public_errors()) and self.paths["report_path"] is None:
            # the reason cannot carry the message: the steward finds it here
            self.paths["report_path"] = _error_report(
                self.report_path, self.spec.id, self.run_id, "failed", exc
            )
        self.finish("failed", _failure_reason(kind, exc))

    def reject_extract(self, exc: Exception) -> RunOutcome:
        self.paths["report_path"] = _error_report(
            self.report_path, self.spec.id, self.run_id, "extract", exc
        )
        log.error("%s: REJECTED at extract: %s", self.spec.id, exc)
        return self.finish("rejected", f"extract: {exc}")

    def execute(self, source_path: Path | str | None, full: bool) -> RunOutcome:
        spec, settings, wrap = self.spec, self.settings, self.wrap
        # A missing suite or hash key is a configuration error: refuse before any work.
        require_suite(spec, settings.expectations_dir)
        wrap("check-ready", _check_ready)(spec, settings)
        if full:
            forget_http_validators(settings, spec)
        since = None if full else stored_watermark(settings, spec)
        if streams(spec, settings, source_path, since):
            return self.streamed(source_path)
        ext = wrap("extract", extract_stage)(spec, settings, self.run_id, source_path, since)
        if isinstance(ext, NotExtracted) and ext.unchanged:
            log.info("%s: unchanged at the source: %s", spec.id, ext.error)
            last = Ledger(settings.ledger_path).last(spec.id, "published")
            version = last.portal_version if last else None
            reason = f"source unchanged: {ext.error}"
            return self.finish("unchanged", reason, portal_version=version)
        if isinstance(ext, NotExtracted):
            return self.reject_extract(ext.error)
        self.stats["rows_in"] = ext.rows
        same = self.same_input(ext.sha256, since, ext.source_modified)
        return same or self.checked_and_published(ext, since)

    def same_input(
        self, sha256: str, since: str | None, source_modified: str | None
    ) -> RunOutcome | None:
        """Record the run's input; ``unchanged`` when the live version's run had it."""
        spec, settings = self.spec, self.settings
        self.stats["input_key"] = key = input_key(spec, settings, sha256, since)
        self.stats["source_modified"] = source_modified
        same = _same_input_still_live(settings, spec, key)
        if same is None:
            return None
        return self.finish(
            "unchanged",
            "source unchanged (same content as the live version's run)",
            portal_version=same.portal_version,
        )

    def checked_and_published(self, ext: Extract, since: str | None) -> RunOutcome:
        spec, settings, wrap = self.spec, self.settings, self.wrap
        drift = schema_drift(spec, ext.raw, ext.frame)
        if drift.rejects():
            self.paths["report_path"] = _error_report(
                self.report_path, spec.id, self.run_id, "schema", SchemaDriftError(drift)
            )
            log.error("%s: %s", spec.id, drift.reason())
            return self.finish("rejected", drift.reason())
        report = wrap("validate", validate_stage)(spec, ext, settings)
        self.paths["report_path"] = str(self.report_path)
        if drift.drifted:  # ignore_new: the new columns are reported, never published
            report.notes.extend(drift.lines())
            report.write(self.report_path)
        self.stats.update(_counts(report))
        frame = ext.frame
        if not report.passed:
            held = quarantine_bad_rows(spec, ext, report, settings)
            if held is None or not held.accepted or held.frame is None:
                return self.finish("rejected", held.reason if held else report.summary())
            report.write(self.report_path)  # now records the quarantined rows
            frame, self.stats["rows_quarantined"] = held.frame, held.rows
        return self.protected_and_published(ext, frame, since)

    def protected_and_published(
        self, ext: Extract, frame: pd.DataFrame, since: str | None
    ) -> RunOutcome:
        spec, settings, wrap = self.spec, self.settings, self.wrap
        protected = wrap("protect", protect_stage)(spec, frame, settings, self.run_id)
        self.paths["privacy_report_path"] = str(self.privacy_path)
        self.stats["privacy_findings"] = len(protected.report.blocking)
        if protected.report.blocked:
            return self.finish("rejected", f"privacy: {protected.report.summary()}")

        quality = {k: int(self.stats[k]) for k in _QUALITY_KEYS if k in self.stats}
        result = wrap("publish", publish_stage)(
            spec,
            protected.frame,
            settings,
            self.run_id,
            protected.report.metadata_notes(),
            since,
            quality,
        )
        self.stats["rows_out"] = result.rows
        held = ext.frame[~ext.frame.index.isin(frame.index)]
        advance_watermark(settings, spec, frame, since, self.run_id, held)
        outcome: Outcome = "published" if result.changed else "unchanged"
        reason = _published_reason(result)
        if self.stats.get("rows_quarantined"):
            reason += f"; {self.stats['rows_quarantined']:,} bad rows quarantined"
        return self.finish(outcome, reason, portal_version=result.version, result=result)

    def streamed(self, source_path: Path | str | None) -> RunOutcome:
        """``execute`` for a large file, a batch of rows at a time (``civicflow.streaming``):
        the same outcomes, reports and version as the whole-table stages."""
        spec, settings, wrap = self.spec, self.settings, self.wrap
        copy = wrap("extract", copy_stage)(spec, settings, self.run_id, source_path)
        if isinstance(copy, NotExtracted):
            return self.reject_extract(copy.error)
        same = self.same_input(copy.sha256, None, copy.source_modified)
        if same is not None:
            return same
        checked = wrap("validate-and-protect", check_stage)(spec, settings, self.run_id, copy)
        if isinstance(checked, NotExtracted):
            return self.reject_extract(checked.error)
        try:
            return self.judged_and_published(checked, copy)
        finally:
            checked.copy.path.unlink(missing_ok=True)  # kept (moved) when published

    def judged_and_published(self, checked: Checked, copy: RawCopy) -> RunOutcome:
        spec, settings = self.spec, self.settings
        self.stats["rows_in"] = checked.rows_in
        if not checked.passed:
            _discard(checked.staged)
        if checked.drift.rejects():
            self.paths["report_path"] = _error_report(
                self.report_path, spec.id, self.run_id, "schema", SchemaDriftError(checked.drift)
            )
            log.error("%s: %s", spec.id, checked.drift.reason())
            return self.finish("rejected", checked.drift.reason())
        report = checked.report
        if checked.drift.drifted:  # ignore_new: the new columns are reported, never published
            report.notes.extend(checked.drift.lines())
        report.write(self.report_path)
        self.paths["report_path"] = str(self.report_path)
        log.info("%s: %s (report %s)", spec.id, report.summary(), self.report_path)
        self.stats.update(_counts(report))
        if not report.passed:
            if not quarantines(spec):
                return self.finish("rejected", report.summary())
            # holding bad rows back reads them from the whole table: the frame path
            log.info("%s: checks failed with quarantine on: reading the table whole", spec.id)
            return self.checked_and_published(read_copy(spec, self.run_id, copy), None)
        checked.privacy.write(self.privacy_path)
        self.paths["privacy_report_path"] = str(self.privacy_path)
        self.stats["privacy_findings"] = len(checked.privacy.blocking)
        log.info(
            "%s: privacy: %s (report %s)", spec.id, checked.privacy.summary(), self.privacy_path
        )
        if checked.privacy.blocked:
            return self.finish("rejected", f"privacy: {checked.privacy.summary()}")
        quality = {k: int(self.stats[k]) for k in _QUALITY_KEYS if k in self.stats}
        result = self.wrap("publish", publish_checked)(
            spec, settings, self.run_id, checked, checked.privacy.metadata_notes(), quality
        )
        self.stats["rows_out"] = result.rows
        outcome: Outcome = "published" if result.changed else "unchanged"
        return self.finish(
            outcome, _published_reason(result), portal_version=result.version, result=result
        )


def spool_path(settings: Settings, dataset_id: str, run_id: str) -> Path:
    """Where a streamed run keeps its checked rows (private) until they are published."""
    return settings.spool_dir / dataset_id / f"{run_id}.parquet"


def copy_stage(
    spec: DatasetSpec, settings: Settings, run_id: str, source_path: Path | str | None
) -> RawCopy | NotExtracted:
    """A streamed run's extract: the immutable raw copy (read batch by batch later)."""
    try:
        copy = copy_input(spec, settings, run_id, source_path)
    except ExtractError as exc:
        return NotExtracted(unchanged=False, error=exc)
    log.info("%s: raw copy %s (sha256 %s…)", spec.id, copy.path, copy.sha256[:12])
    return copy


def check_stage(
    spec: DatasetSpec, settings: Settings, run_id: str, copy: RawCopy
) -> Checked | NotExtracted:
    """Read, validate and protect the raw copy a batch at a time. The rows are staged on
    the portal as they are protected when the publish will replace the table (no kept
    copy of a live version to send only the changes against)."""
    portal = get_portal(spec.portal.kind, settings)
    assert isinstance(portal, StagingPortal)
    base = portal.current_version(spec.table)
    staged = None
    if not _may_send_changes(spec, settings, base):
        staged = portal.stage(
            spec.table,
            fields=spec.published_fields(),
            primary_key=list(spec.primary_key),
            run_id=run_id,
            base=base,
        )
    path = spool_path(settings, spec.id, run_id)
    settings.private_dir(path.parent)
    try:
        return check_batches(spec, settings, run_id, copy, path, staged)
    except (ExtractError, TransformError) as exc:
        _discard(staged)
        return NotExtracted(unchanged=False, error=exc)
    except BaseException:
        _discard(staged)
        raise


def _may_send_changes(spec: DatasetSpec, settings: Settings, base: PublishedVersion | None) -> bool:
    """Whether a republish may send only its changed rows: the table is live with a key
    and a kept copy of its rows to compare with (``_changes_to_send`` decides)."""
    if base is None or base.data_version is None or not spec.primary_key:
        return False
    return _kept_manifest(settings, spec.id, base.data_version) is not None


def _discard(staged: StagedRows | None) -> None:
    if staged is not None:
        staged.discard()


def publish_checked(
    spec: DatasetSpec,
    settings: Settings,
    run_id: str,
    checked: Checked,
    column_notes: dict[str, str],
    quality: dict[str, int] | None = None,
) -> PublishResult:
    """``publish_stage`` for a streamed run's rows (its Parquet copy): only the changes,
    or the staged rows swapped in (staged now from the copy when they were not, or
    could not all be, during the checks). The copy becomes the version's kept copy."""
    portal = get_portal(spec.portal.kind, settings)
    assert isinstance(portal, StagingPortal)
    base = portal.current_version(spec.table)
    rows, data_version = checked.copy.path, checked.data_version
    diffed = _live_diff(spec, settings, rows, data_version, base)
    metadata, summary = versioned_metadata(
        spec,
        settings,
        run_id,
        rows,
        data_version,
        base,
        column_notes,
        quality,
        portal,
        diffed,
        empty=checked.empty,
    )
    target = published_version(data_version, metadata)
    if base is not None and base.version != target:
        _refuse_if_published_since_start(spec, base, run_id)
    same_rows = base is not None and base.data_version == data_version
    if same_rows and not spec.primary_key:
        # no key to apply an empty change set by: the portal relabels (or keeps) the
        # live rows given them again, read whole from the copy (rare: the same rows in
        # a file with other bytes)
        _discard(checked.staged)
        result = portal.publish(
            spec.table,
            pd.read_parquet(rows),
            fields=spec.published_fields(),
            primary_key=[],
            version=data_version,
            run_id=run_id,
            metadata=metadata,
            base=base,
        )
    else:
        result = _changed_or_swapped(
            spec, settings, portal, checked, run_id, base, diffed, metadata, same_rows
        )
    if published.lags(settings, spec.id, result.version):
        published.keep_file(
            settings,
            spec.id,
            checked.copy,
            result.version,
            result.run_id or "",
            data_version=data_version,
            metadata=dataclasses.asdict(metadata),
            published_at=result.published_at,
        )
    _record_version(settings, summary, result)
    _log_published(spec, result)
    return result


def _changed_or_swapped(
    spec: DatasetSpec,
    settings: Settings,
    portal: StagingPortal,
    checked: Checked,
    run_id: str,
    base: PublishedVersion | None,
    diffed: RowDiff | None | EllipsisType,
    metadata: TableMetadata,
    same_rows: bool,
) -> PublishResult:
    """The live rows relabelled or changed by key (an empty or small change set), else
    the whole table's staged rows swapped in."""
    rows, data_version = checked.copy.path, checked.data_version
    changes = (
        _no_changes(spec) if same_rows else _changes_to_send(spec, settings, rows, base, diffed)
    )
    if changes is not None:
        _discard(checked.staged)
        return _apply(portal, spec, changes, data_version, run_id, metadata, base)
    staged = _staged_in_full(spec, portal, checked, run_id, base)
    return staged.swap(version=data_version, metadata=metadata)


def _apply(
    portal: Portal,
    spec: DatasetSpec,
    changes: RowChanges,
    data_version: str,
    run_id: str,
    metadata: TableMetadata,
    base: PublishedVersion | None,
) -> PublishResult:
    """``changes`` applied by the spec's primary key as the version ``data_version``."""
    return portal.apply_changes(
        spec.table,
        changes,
        fields=spec.published_fields(),
        primary_key=list(spec.primary_key),
        version=data_version,
        run_id=run_id,
        metadata=metadata,
        base=base,
    )


def _staged_in_full(
    spec: DatasetSpec,
    portal: StagingPortal,
    checked: Checked,
    run_id: str,
    base: PublishedVersion | None,
) -> StagedRows:
    """The rows staged during the checks, or staged now from the copy when they were
    not (a republish that could have sent only changes) or not all of them were."""
    staged = checked.staged
    if checked.staging_error is not None:
        log.warning(
            "%s: staging stopped during the checks (%s): staging again from the copy",
            spec.id,
            checked.staging_error,
        )
    if staged is not None and staged.complete and checked.staging_error is None:
        return staged
    _discard(staged)
    return _stage_copy(spec, portal, run_id, checked.copy.path, base, staged)


def _no_changes(spec: DatasetSpec) -> RowChanges:
    """No row to upsert or delete: a new version of the live rows (new metadata)."""
    columns = [f.name for f in spec.published_fields()]
    return RowChanges(pd.DataFrame(columns=columns), pd.DataFrame(columns=list(spec.primary_key)))


def _stage_copy(
    spec: DatasetSpec,
    portal: StagingPortal,
    run_id: str,
    rows: Path,
    base: PublishedVersion | None,
    before: StagedRows | None,
) -> StagedRows:
    """Stage the rows from the Parquet copy, a batch at a time; datetimes to the
    millisecond when an earlier staging found a batch that needs them."""
    import pyarrow.parquet as pq

    unit = "ms" if before is not None and not before.complete else None
    staged = portal.stage(
        spec.table,
        fields=spec.published_fields(),
        primary_key=list(spec.primary_key),
        run_id=run_id,
        base=base,
        date_unit=unit,
    )
    try:
        for batch in pq.ParquetFile(rows).iter_batches(batch_size=100_000):
            staged.load(batch.to_pandas())
    except BaseException:
        staged.discard()
        raise
    return staged


def _write_report_page(dataset_id: str, report_path: str | Path | None) -> None:
    """The private HTML page beside the run's JSON report, for stewards.

    The run's outcome stands whatever happens here: a page that cannot be written is
    logged (by type: the page's inputs hold source values) and the JSON report remains.
    """
    if not report_path or not Path(report_path).is_file():
        return
    from civicflow.quality.html import write_report_html

    try:
        write_report_html(report_path)
    except Exception as exc:  # noqa: BLE001 - logged, the run's outcome is already decided
        log.error("%s: run report page not written (%s)", dataset_id, type(exc).__name__)
        log.debug("%s", traceback.format_exc())


def _published_reason(result: PublishResult) -> str:
    if result.change == "data" and result.upserted is not None:
        return (
            f"published a new version (changed rows only: {result.upserted:,} upserted, "
            f"{result.deleted or 0:,} deleted)"
        )
    return {
        "data": "published a new version",
        "metadata": "published a new version (metadata only, same rows)",
    }.get(result.change or "", "portal already holds this exact version")


class SchemaDriftError(Exception):
    """The source's columns changed under the spec; ``detail`` is the private diff."""

    def __init__(self, drift: SchemaDrift) -> None:
        super().__init__(drift.reason())
        self.detail = {"schema_drift": drift.to_dict(), "lines": drift.lines()}


@dataclass
class DryRun:
    """What ``publish --dry-run`` found: the plan, or why the run would be rejected.

    A dry run is not recorded in the run ledger (its outcomes are those of real runs,
    which the scorecard counts), and writes nothing to the portal or var/published.
    """

    dataset_id: str
    run_id: str
    plan: PublishPlan | None
    reason: str = ""
    report_path: Path | None = None
    privacy_report_path: Path | None = None
    #: the source said nothing changed (HTTP 304, no rows past the watermark)
    unchanged: bool = False

    @property
    def ok(self) -> bool:
        return self.plan is not None or self.unchanged


def dry_run_dataset(
    settings: Settings,
    dataset_id: str,
    source_path: Path | str | None = None,
    spec: DatasetSpec | None = None,
) -> DryRun:
    """Extract, validate and protect as a run does (raw copy and reports written), then
    ask the portal what publishing the result would change. Portal errors raise."""
    spec = spec or find_dataset(settings.datasets_dir, dataset_id)
    run_id = new_run_id()
    report_path, privacy_path = report_paths(settings, spec.id, run_id)
    require_suite(spec, settings.expectations_dir)
    _check_ready(spec, settings)
    try:
        ext = extract_stage(spec, settings, run_id, source_path)
        if isinstance(ext, NotExtracted) and ext.unchanged:
            reason = f"source unchanged ({ext.error}): nothing would change"
            return DryRun(spec.id, run_id, None, reason, unchanged=True)
        if isinstance(ext, NotExtracted):
            _error_report(report_path, spec.id, run_id, "extract", ext.error)
            return DryRun(spec.id, run_id, None, f"extract: {ext.error}", report_path)
        report = validate_stage(spec, ext, settings)
        if not report.passed:
            return DryRun(spec.id, run_id, None, report.summary(), report_path)
        protected = protect_stage(spec, ext.frame, settings, run_id)
        if protected.report.blocked:
            reason = f"privacy: {protected.report.summary()}"
            return DryRun(spec.id, run_id, None, reason, report_path, privacy_path)
        frame = protected.frame
        portal = get_portal(spec.portal.kind, settings)
        plan = portal.plan(
            spec.table,
            frame,
            fields=spec.published_fields(),
            primary_key=[k for k in spec.primary_key if k in frame.columns],
            version=published.content_version(frame),
            metadata=_planned_metadata(spec, settings, portal, protected, report),
        )
        log.info("%s: dry run: %s", spec.id, "; ".join(line.strip() for line in plan.lines()))
        return DryRun(spec.id, run_id, plan, "", report_path, privacy_path)
    finally:
        _prune(settings, spec.id)  # a dry run's raw copy and reports age out like a run's


def _planned_metadata(
    spec: DatasetSpec, settings: Settings, portal: Portal, protected: Any, report: Any
) -> TableMetadata:
    """The metadata a dry run compares: the spec's, with the live version's empty counts
    and history. Those follow the rows (whose changes the plan counts already), so the
    plan's metadata lists what the spec changes, and the live source plans unchanged."""
    live = _live_metadata(settings, spec, portal.current_version(spec.table), portal)
    extra = (live or {}).get("extra") or {}
    empty = {
        str(f["name"]): int(f["empty"])
        for f in extra.get("dictionary") or []
        if isinstance(f, dict) and isinstance(f.get("empty"), int)
    }
    return table_metadata(
        spec,
        protected.report.metadata_notes(),
        _counts(report),
        empty=empty or None,
        history=_history_of({"extra": extra}),
    )


def publishable(specs: dict[str, DatasetSpec]) -> list[str]:
    """Datasets ``publish --all`` runs: those no other flow produces."""
    return [i for i, s in sorted(specs.items()) if s.produced_by is None]
