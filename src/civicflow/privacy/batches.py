"""The privacy stage over record batches (partitions), merged into the whole-table report.

Every rule (drop, keyed-HMAC hash, generalise, redact, small-count suppression) reads a
row's own values only, so ``protect`` runs on each batch as it is, and the protected
batches concatenated are the protected table. The reports merge:

- each rule's changed and non-null counts add up;
- findings merge per column and detector: counts add up, the first example rows (and
  their masked examples) in row order, in the order the whole table's scan lists them;
  the blocking decision follows from the merged findings and the spec's ``pii_allow``;
- the finest location a column publishes is the largest over the batches;
- the one whole-column decision of the scan, whether an undeclared float column holds
  coordinates, is made on the whole column's ``CoordinateShape`` (counts added over the
  batches): each batch also reports that column's findings as if it did.

``protect_batches`` is the serial path; a distributed one resolves nothing secret in
the driver: each partition's ``protect_batch`` reads the hash key where it runs.
Nothing here imports Prefect or Dask.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from civicflow.privacy.consistency import Level
from civicflow.privacy.detectors import COORDINATE, FINER_LOCATION
from civicflow.privacy.guard import ProtectResult, allow_findings, protect, spec_hash_key
from civicflow.privacy.keys import HashKey
from civicflow.privacy.report import (
    INVALID_VALUE,
    MAX_EXAMPLES,
    Finding,
    PrivacyReport,
    RuleApplied,
)
from civicflow.privacy.scan import (
    CoordinateShape,
    column_findings,
    coordinate_shape,
    detector_rank,
    scan_column,
)
from civicflow.settings import Settings
from civicflow.spec.models import DatasetSpec


@dataclass
class ProtectPart:
    """One batch protected: its own report and what the merge needs besides. Picklable
    (the hash key stays where the batch ran)."""

    report: PrivacyReport
    #: the protected batch (None when the caller keeps only the report)
    frame: pd.DataFrame | None
    #: published column -> its type (the order its detectors are reported in)
    dtypes: dict[str, Any]
    levels: list[Level]
    #: undeclared float column -> its shape in this batch
    shapes: dict[str, CoordinateShape] = field(default_factory=dict)
    #: undeclared float column -> its findings if the column holds coordinates
    as_coordinates: dict[str, list[Finding]] = field(default_factory=dict)


def protect_batch(
    spec: DatasetSpec,
    frame: pd.DataFrame,
    settings: Settings,
    *,
    hash_key: HashKey | None = None,
    keep_frame: bool = True,
) -> ProtectPart:
    """``protect`` on one batch (index = the table's row numbers), kept for the merge."""
    result = protect(spec, frame, settings, hash_key=hash_key)
    published = result.frame
    rows = published.index.to_numpy()
    part = ProtectPart(
        report=result.report,
        frame=published if keep_frame else None,
        dtypes={str(c): published[c].dtype for c in published.columns},
        levels=result.levels,
    )
    for name in published.columns:
        column, f = str(name), spec.field(str(name))
        shape = coordinate_shape(published[name], f)
        if shape is None:
            continue
        part.shapes[column] = shape
        if shape.fine:
            hits = scan_column(published[name], f, looks_like=True)
            part.as_coordinates[column] = column_findings(spec.id, column, hits, rows)
    return part


def _segment(finding: Finding) -> int:
    """Where ``protect`` lists a finding: invalid values, the scan, then consistency."""
    return (
        0 if finding.detector == INVALID_VALUE else 2 if finding.detector == FINER_LOCATION else 1
    )


def _merge_findings(group: list[Finding]) -> Finding:
    first = group[0]
    return Finding(
        dataset=first.dataset,
        column=first.column,
        detector=first.detector,
        count=sum(f.count for f in group),
        example_rows=[r for f in group for r in f.example_rows][:MAX_EXAMPLES],
        examples=[e for f in group for e in f.examples][:MAX_EXAMPLES],
    )


def _findings(spec: DatasetSpec, parts: Sequence[ProtectPart]) -> list[Finding]:
    """Every batch's findings merged, in the order ``protect`` lists the whole table's."""
    shapes: dict[str, CoordinateShape] = {}
    for part in parts:
        for column, shape in part.shapes.items():
            shapes[column] = shapes[column].merge(shape) if column in shapes else shape
    groups: dict[tuple[int, str, str], list[Finding]] = {}
    for part in parts:
        found = [
            f
            for f in part.report.findings
            # a batch decided these columns alone: the whole column decides below
            if not (f.column in shapes and f.detector == COORDINATE and _segment(f) == 1)
        ]
        for column, as_coordinates in part.as_coordinates.items():
            if shapes[column].looks_like:
                found.extend(as_coordinates)
        for f in found:
            groups.setdefault((_segment(f), f.column, f.detector), []).append(f)
    fields = [f.name for f in spec.fields]
    dtypes = parts[0].dtypes

    def order(key: tuple[int, str, str]) -> tuple[int, int, int]:
        segment, column, detector = key
        rank = detector_rank(dtypes[column], spec.field(column)) if segment == 1 else {}
        return segment, fields.index(column), rank.get(detector, len(rank))

    return [_merge_findings(groups[key]) for key in sorted(groups, key=order)]


def _levels(spec: DatasetSpec, parts: Sequence[ProtectPart]) -> list[Level]:
    finest: dict[str, Level] = {}
    for part in parts:
        for level in part.levels:
            known = finest.get(level.column)
            if known is None or level.decimals > known.decimals:
                finest[level.column] = level
    published = parts[0].report.published_columns
    in_order = [finest[c] for c in published if c in finest]
    return sorted(in_order, key=lambda lv: -lv.decimals)


def merge_privacy(spec: DatasetSpec, parts: Sequence[ProtectPart]) -> PrivacyReport:
    """The whole table's privacy report from its batches' parts, in row order."""
    if not parts:
        raise ValueError("no batch to merge")
    first = parts[0].report
    rules = []
    for position, rule in enumerate(first.rules):
        same = [p.report.rules[position] for p in parts]
        if any((r.column, r.rule) != (rule.column, rule.rule) for r in same):
            raise RuntimeError("batches applied different privacy rules")
        rules.append(
            RuleApplied(
                rule.column,
                rule.rule,
                rule.reason,
                sum(r.values_changed for r in same),
                sum(r.non_null for r in same),
                rule.method,
            )
        )
    findings = _findings(spec, parts)
    invalid = [f for f in findings if f.detector == INVALID_VALUE]
    scanned = [f for f in findings if f.detector != INVALID_VALUE]
    return PrivacyReport(
        dataset_id=first.dataset_id,
        rows=sum(p.report.rows for p in parts),
        published_columns=list(first.published_columns),
        rules=rules,
        findings=invalid + scanned,
        allowances=allow_findings(spec, scanned),
        suppression_threshold=first.suppression_threshold,
        finest_location=[lv.describe() for lv in _levels(spec, parts)],
        scan_seconds=round(sum(p.report.scan_seconds for p in parts), 4),
    )


def protect_batches(
    spec: DatasetSpec,
    frames: Iterable[pd.DataFrame],
    settings: Settings,
    *,
    hash_key: HashKey | None = None,
) -> ProtectResult:
    """``protect`` over a table's batches (in row order), one batch at a time: the
    protected table and the whole table's report."""
    key = hash_key or spec_hash_key(spec, settings)  # resolved once, not per batch
    parts = [protect_batch(spec, frame, settings, hash_key=key) for frame in frames]
    protected = pd.concat([p.frame for p in parts if p.frame is not None])
    return ProtectResult(
        frame=protected, report=merge_privacy(spec, parts), levels=_levels(spec, parts)
    )


def frame_batches(frame: pd.DataFrame, rows: int) -> list[pd.DataFrame]:
    """A frame as batches of ``rows`` rows (views; row numbers kept)."""
    if rows < 1:
        raise ValueError(f"batch size {rows}: at least 1")
    return [frame.iloc[start : start + rows] for start in range(0, max(len(frame), 1), rows)]
