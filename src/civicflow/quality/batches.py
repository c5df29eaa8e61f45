"""Validation over record batches (partitions), merged into the whole-table report.

``validate()`` checks one extract in one frame. Here the same checks run on each batch
of an extract (a slice of its rows, index = the table's row numbers) and the per-batch
results merge into the report ``validate()`` gives for the whole table:

- row-level checks (structure cells; GX map expectations whose verdict for a row reads
  only that row) add up: counts summed, GX's percentages and ``mostly`` verdict
  recomputed from the summed counts (GX's own formatter), failing rows and the first
  MAX_EXAMPLES examples in row order;
- header checks and GX expectations on the column set only are the same in every batch;
- uniqueness (the primary key, ``unique`` fields, GX uniqueness expectations) is checked
  over the whole table without holding it twice: each batch keeps a uint64 hash of each
  key per row; the hashes that repeat across the table name the few rows that may
  repeat (``duplicate_rows``), whose key values are read again from their batches
  (``key_rows``) and checked by the single-frame checks themselves, so a hash collision
  cannot invent a duplicate;
- every other expectation (aggregates such as a proportion of non-null values, a mean
  or median, row counts, cross-row map expectations such as increasing values) runs
  once, in GX, over only the columns it reads, gathered from the batches.

The serial path is ``validate_batches``; a distributed one calls ``plan_validation``
once, ``validate_batch`` per partition (picklable in and out), ``duplicate_rows`` and
``key_rows`` for the partitions it names (none unless a key hash repeats), then
``merge_validation``. Nothing here imports Prefect or Dask.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from civicflow.quality import assemble_report, content_suite, quarantines
from civicflow.quality.expectations import (
    ALL_ROWS_FORMAT,
    RESULT_FORMAT,
    checked_columns,
    columns_of,
    expectation_check,
    expectation_results,
    integer_columns,
    raised,
    row_key,
    split_runnable,
)
from civicflow.quality.report import MAX_EXAMPLES, Check, QualityReport
from civicflow.quality.structure import (
    StructureResult,
    cell_message,
    check_structure,
    primary_key_check,
    unique_error_check,
    unique_field,
)
from civicflow.sources.base import Extract
from civicflow.spec.models import DatasetSpec

if TYPE_CHECKING:
    from great_expectations.expectations.expectation import Expectation

#: GX map metrics whose verdict for a row reads that row only: run per batch, counts added
ROW_WISE_METRICS = frozenset(
    {
        "column_values.between",
        "column_values.in_set",
        "column_values.not_in_set",
        "column_values.nonnull",
        "column_values.null",
        "column_values.match_regex",
        "column_values.not_match_regex",
        "column_values.match_regex_list",
        "column_values.not_match_regex_list",
        "column_values.match_like_pattern",
        "column_values.not_match_like_pattern",
        "column_values.match_like_pattern_list",
        "column_values.not_match_like_pattern_list",
        "column_values.match_strftime_format",
        "column_values.dateutil_parseable",
        "column_values.json_parseable",
        "column_values.match_json_schema",
        "column_values.value_length.between",
        "column_values.value_length.equals",
        "column_pair_values.a_greater_than_b",
        "column_pair_values.equal",
        "column_pair_values.in_set",
        "multicolumn_sum.equal",
        "multicolumn_values.equal",
        "select_column_values.unique.within_record",
    }
)
#: GX map metrics that compare a row with every other: counted per batch, repeats hashed
UNIQUE_METRICS = frozenset({"column_values.unique", "compound_columns.unique"})
#: GX expectations on the column set only: every batch gives the whole table's answer
COLUMN_SET_EXPECTATIONS = frozenset(
    {
        "expect_column_to_exist",
        "expect_table_columns_to_match_set",
        "expect_table_columns_to_match_ordered_list",
        "expect_table_column_count_to_equal",
        "expect_table_column_count_to_be_between",
    }
)
_HEADER_CHECKS = ("missing-label", "extra-label")


def _columns(expectation: Expectation) -> list[str]:
    return list(dict.fromkeys(columns_of(expectation)))


@dataclass(frozen=True)
class KeySet:
    """Columns whose values must not repeat over the whole table."""

    columns: tuple[str, ...]
    #: which rows take part: "all" (every column present: a key), "any" (at least one
    #: present: GX ignores rows whose values are all missing) or "every" (every row)
    rows: str


@dataclass
class ValidationPlan:
    """What every batch runs: the spec, the suite as it runs and how each expectation
    merges. Built once (``plan_validation``) and sent to every partition."""

    spec: DatasetSpec
    suite_name: str
    expectations: list[Any]
    covered: list[str]
    all_rows: bool
    #: suite positions run per batch and added up
    row_wise: list[int] = field(default_factory=list)
    #: suite positions counted per batch whose repeats come from the hashed keys
    unique: list[int] = field(default_factory=list)
    #: suite positions the first batch answers for the table
    column_set: list[int] = field(default_factory=list)
    #: suite positions run once over their columns, gathered from the batches
    whole: list[int] = field(default_factory=list)

    @property
    def result_format(self) -> dict[str, Any]:
        return ALL_ROWS_FORMAT if self.all_rows else RESULT_FORMAT

    def gathered_columns(self) -> list[str]:
        return list(dict.fromkeys(c for n in self.whole for c in _columns(self.expectations[n])))

    def key_sets(self, missing: set[str]) -> list[KeySet]:
        """The uniqueness checked over the whole table (none over a missing column)."""
        spec = self.spec
        sets = []
        if spec.primary_key and not set(spec.primary_key) & missing:
            sets.append(KeySet(tuple(spec.primary_key), "all"))
        for f in spec.fields:
            if unique_field(f, spec.primary_key) and f.name not in missing:
                sets.append(KeySet((f.name,), "all"))
        for n in self.unique:
            exp = self.expectations[n]
            if set(_columns(exp)) & missing:
                continue
            never = exp.configuration.kwargs.get("ignore_row_if") == "never"
            sets.append(KeySet(tuple(checked_columns(exp)), "every" if never else "any"))
        return sets

    def key_columns(self, missing: set[str]) -> list[str]:
        """Every column the whole-table uniqueness checks read (row conditions too)."""
        names = [c for ks in self.key_sets(missing) for c in ks.columns]
        names += [c for n in self.unique for c in _columns(self.expectations[n])]
        return [c for c in dict.fromkeys(names) if c not in missing]


def plan_validation(spec: DatasetSpec, expectations_dir: Path | str) -> ValidationPlan:
    """Load the dataset's suite (as ``validate`` runs it) and sort its expectations."""
    suite, covered = content_suite(spec, expectations_dir)
    plan = ValidationPlan(spec, suite.name, list(suite.expectations), covered, quarantines(spec))
    for n, exp in enumerate(plan.expectations):
        metric = getattr(exp, "map_metric", None)
        etype = exp.configuration.type
        if etype in COLUMN_SET_EXPECTATIONS:
            plan.column_set.append(n)
        elif metric in ROW_WISE_METRICS:
            plan.row_wise.append(n)
        elif metric in UNIQUE_METRICS:
            plan.unique.append(n)
        else:
            plan.whole.append(n)
    return plan


@dataclass
class Partial:
    """A GX result as plain data: one batch's, or rebuilt for the table from them
    (what ``expectation_check`` reads)."""

    success: bool
    result: dict[str, Any]
    exception_info: Any = None


def _partial(result: Any) -> Partial:
    return Partial(bool(result.success), dict(result.result or {}), result.exception_info)


@dataclass
class KeyDigest:
    """One key set over one batch: a uint64 hash and the row number of each taking part."""

    hashes: np.ndarray
    rows: np.ndarray


@dataclass
class BatchPart:
    """What one batch's validation keeps for the merge: results, hashes and gathered
    columns, never the batch itself. Picklable."""

    rows: int
    structure: StructureResult
    results: dict[int, Partial]
    keys: list[KeyDigest]
    gathered: pd.DataFrame
    run_id: str
    row_key: str
    integers: set[str]
    seconds: float
    #: the batch's first and last row numbers (which batch holds a row)
    first_row: int
    last_row: int
    #: the key columns with their types and no rows (the merge's frame when no key repeats)
    key_template: pd.DataFrame


def _runnable(plan: ValidationPlan, missing: set[str]) -> list[int]:
    return [n for n, exp in enumerate(plan.expectations) if not set(_columns(exp)) & missing]


def _digest(frame: pd.DataFrame, keys: KeySet) -> KeyDigest:
    values = frame[list(keys.columns)]
    present = values.notna()
    if keys.rows == "all":
        taking = present.all(axis=1).to_numpy()
    elif keys.rows == "any":
        taking = present.any(axis=1).to_numpy()
    else:
        taking = np.ones(len(values), dtype=bool)
    chosen = values[taking]
    hashes = pd.util.hash_pandas_object(chosen, index=False).to_numpy(dtype=np.uint64)
    return KeyDigest(hashes, chosen.index.to_numpy(dtype=np.int64))


def validate_batch(plan: ValidationPlan, batch: Extract) -> BatchPart:
    """Every check ``validate`` makes, on one batch, kept for ``merge_validation``."""
    started = time.perf_counter()
    structure = check_structure(plan.spec, batch)
    missing = structure.missing_fields
    runnable = set(_runnable(plan, missing))
    here = [n for n in (*plan.row_wise, *plan.unique, *plan.column_set) if n in runnable]
    here.sort()
    results = expectation_results(
        plan.suite_name, [plan.expectations[n] for n in here], batch.frame, plan.all_rows
    )
    frame = batch.frame
    gathered = _present(plan.gathered_columns(), frame)
    index = frame.index.to_numpy()
    return BatchPart(
        rows=batch.rows,
        structure=structure,
        results={n: _partial(r) for n, r in zip(here, results, strict=True)},
        keys=[_digest(frame, ks) for ks in plan.key_sets(missing)],
        # a copy: a slice would carry (and pickle) the whole column
        gathered=frame[gathered].copy() if plan.whole else frame.iloc[:0, :0],
        run_id=batch.run_id,
        row_key=row_key(frame),
        integers=integer_columns(frame),
        seconds=time.perf_counter() - started,
        first_row=int(index[0]) if len(index) else 0,
        last_row=int(index[-1]) if len(index) else -1,
        key_template=frame[_present(plan.key_columns(missing), frame)].iloc[:0].copy(),
    )


def _present(columns: list[str], frame: pd.DataFrame) -> list[str]:
    return [c for c in columns if c in frame.columns]


def duplicate_rows(plan: ValidationPlan, parts: Sequence[BatchPart]) -> dict[int, np.ndarray]:
    """Per batch position, the row numbers whose key hash repeats somewhere in the table
    (every row of every duplicate is among them); batches without any are left out."""
    if not parts or not parts[0].keys:
        return {}
    found: list[np.ndarray] = []
    for k in range(len(parts[0].keys)):
        hashes = np.concatenate([p.keys[k].hashes for p in parts])
        rows = np.concatenate([p.keys[k].rows for p in parts])
        found.append(rows[pd.Series(hashes).duplicated(keep=False).to_numpy()])
    candidates = np.unique(np.concatenate(found))
    out = {}
    for i, part in enumerate(parts):
        mine = candidates[(candidates >= part.first_row) & (candidates <= part.last_row)]
        if mine.size:
            out[i] = mine
    return out


def key_rows(plan: ValidationPlan, batch: Extract, rows: np.ndarray) -> pd.DataFrame:
    """The key columns of some of a batch's rows (those ``duplicate_rows`` named)."""
    return batch.frame.loc[rows, _present(plan.key_columns(set()), batch.frame)]


def _merge_cells(checks: list[Check]) -> Check:
    """One row-level cell check over every batch: counts added, first examples kept."""
    first = checks[0]
    count = sum(c.unexpected_count for c in checks)
    examples = [e for c in checks for e in c.examples][:MAX_EXAMPLES]
    rows = [c.rows for c in checks if c.rows is not None]
    return dataclasses.replace(
        first,
        status="failed" if count else "passed",
        unexpected_count=count,
        examples=examples,
        message=cell_message(count, examples, first.what),
        rows=np.concatenate(rows) if rows else None,
    )


def _structure(
    plan: ValidationPlan, parts: Sequence[BatchPart], candidates: pd.DataFrame, rows: int
) -> StructureResult:
    missing = parts[0].structure.missing_fields
    lists = [p.structure.checks for p in parts]
    merged = []
    for position, first in enumerate(lists[0]):
        same = [checks[position] for checks in lists]
        if any((c.name, c.columns) != (first.name, first.columns) for c in same):
            raise RuntimeError("batches ran different structure checks")
        if first.name in _HEADER_CHECKS:
            merged.append(first)
        elif first.name == "primary-key":
            merged.append(primary_key_check(plan.spec, candidates, missing, rows=rows))
        elif first.name == "unique-error":
            merged.append(
                unique_error_check(plan.spec.field(first.columns[0]), candidates[first.columns[0]])
            )
        else:
            merged.append(_merge_cells(same))
    return StructureResult(checks=merged, missing_fields=set(missing))


def _lists(results: Sequence[dict[str, Any]], all_rows: bool) -> tuple[list[Any], list[Any] | None]:
    values_key, index_key = (
        ("unexpected_list", "unexpected_index_list")
        if all_rows
        else ("partial_unexpected_list", "partial_unexpected_index_list")
    )
    values = [v for r in results for v in (r.get(values_key) or [])]
    indexed = [v for r in results for v in (r.get(index_key) or [])]
    has_index = any(index_key in r for r in results)
    return values, indexed if has_index else None


def _map_result(
    plan: ValidationPlan,
    expectation: Expectation,
    counted: Sequence[Partial],
    failing: Sequence[Partial] | None = None,
) -> Partial:
    """Batch results of one map expectation as the whole table's: counts from
    ``counted``, failing values and rows from ``failing`` (default: the same)."""
    from great_expectations.expectations.expectation import _format_map_output, _mostly_success
    from great_expectations.expectations.expectation_configuration import parse_result_format

    error = next((p for p in [*counted, *(failing or [])] if raised(p.exception_info)), None)
    if error is not None:  # reported as the whole table's run would report it
        return Partial(False, error.result, error.exception_info)
    bodies = [p.result for p in counted]
    element = sum(int(b.get("element_count") or 0) for b in bodies)
    # not_be_null and its kind report no missing count: every row is considered
    nonnull = (
        sum(int(b["element_count"]) - int(b["missing_count"] or 0) for b in bodies)
        if bodies and all("missing_count" in b for b in bodies)
        else None
    )
    failing_bodies = [p.result for p in failing] if failing is not None else bodies
    unexpected = sum(int(b.get("unexpected_count") or 0) for b in failing_bodies)
    values, indexed = _lists(failing_bodies, plan.all_rows)
    considered = element if nonnull is None else nonnull
    mostly = expectation._get_success_kwargs().get("mostly")
    success = (
        True
        if element == 0 or considered == 0
        else _mostly_success(considered, unexpected, 1.0 if mostly is None else mostly)
    )
    body = _format_map_output(
        result_format=parse_result_format(plan.result_format),
        success=success,
        element_count=element,
        nonnull_count=nonnull,
        unexpected_count=unexpected,
        unexpected_list=values,
        unexpected_index_list=indexed,
    )
    return Partial(success, body.get("result", {}))


def _once(plan: ValidationPlan, positions: list[int], frame: pd.DataFrame | None) -> dict[int, Any]:
    """GX's results of some expectations run once over ``frame``."""
    if not positions or frame is None:
        return {}
    expectations = [plan.expectations[n] for n in positions]
    results = expectation_results(plan.suite_name, expectations, frame, plan.all_rows)
    return dict(zip(positions, results, strict=True))


def _content(
    plan: ValidationPlan, parts: Sequence[BatchPart], candidates: pd.DataFrame, rows: int
) -> list[Check]:
    missing = parts[0].structure.missing_fields
    runnable = _runnable(plan, missing)
    _, slots = split_runnable(plan.expectations, missing)
    whole = [n for n in plan.whole if n in runnable]
    gathered = pd.concat([p.gathered for p in parts]) if whole else None
    once = _once(plan, whole, gathered)
    # the rows that may repeat hold every repeat: GX finds them there
    unique = [n for n in plan.unique if n in runnable]
    repeats = {
        n: _partial(r)
        for n, r in _once(plan, unique, candidates if len(candidates) else None).items()
    }
    first = parts[0]
    checks = []
    pending = iter(runnable)
    for slot in slots:
        if slot is not None:
            checks.append(slot)
            continue
        n = next(pending)
        exp = plan.expectations[n]
        result: Any
        if n in plan.row_wise:
            result = _map_result(plan, exp, [p.results[n] for p in parts])
        elif n in plan.unique:
            none_repeat = Partial(True, {"unexpected_count": 0})
            result = _map_result(
                plan, exp, [p.results[n] for p in parts], [repeats.get(n, none_repeat)]
            )
        elif n in plan.column_set:
            result = first.results[n]
        else:
            result = once[n]
        checks.append(expectation_check(exp, result, rows, first.row_key, first.integers))
    return checks


def merge_validation(
    plan: ValidationPlan, parts: Sequence[BatchPart], fetched: Sequence[pd.DataFrame] = ()
) -> QualityReport:
    """The whole table's report from its batches' parts, in row order, and the key rows
    ``duplicate_rows`` asked for (``key_rows`` of each batch it named)."""
    if not parts:
        raise ValueError("no batch to merge")
    started = time.perf_counter()
    rows = sum(p.rows for p in parts)
    candidates = (
        pd.concat(list(fetched)).sort_index(kind="stable") if fetched else parts[0].key_template
    )
    structure = _structure(plan, parts, candidates, rows)
    content = _content(plan, parts, candidates, rows)
    report = assemble_report(
        plan.spec, parts[0].run_id, rows, plan.suite_name, structure, content, plan.covered
    )
    report.duration_s = sum(p.seconds for p in parts) + time.perf_counter() - started
    return report


def split_extract(extract: Extract, rows: int, *, copy: bool = False) -> list[Extract]:
    """The extract as batches of ``rows`` rows (the last may be shorter), row numbers kept.

    ``copy``: each batch's Arrow table owns its data, to send it to another process (a
    slice of an Arrow table pickles the whole table's buffers; a pandas slice pickles
    its own rows only); otherwise batches are zero-copy views.
    """
    if rows < 1:
        raise ValueError(f"batch size {rows}: at least 1")
    out = []
    for start in range(0, max(extract.rows, 1), rows):
        raw = extract.raw.slice(start, rows)
        frame = extract.frame.iloc[start : start + rows]
        if copy:
            raw = raw.take(np.arange(raw.num_rows))
        out.append(dataclasses.replace(extract, raw=raw, frame=frame))
    return out


def validate_batches(
    spec: DatasetSpec, batches: Sequence[Extract], expectations_dir: Path | str
) -> QualityReport:
    """``validate`` over an extract's batches (in row order), one batch at a time.

    A batch is read a second time only when a key hash repeats across the table
    (``key_rows`` of the rows that may repeat), so ``batches`` is a sequence.
    """
    plan = plan_validation(spec, expectations_dir)
    parts = [validate_batch(plan, batch) for batch in batches]
    wanted = duplicate_rows(plan, parts)
    fetched = [key_rows(plan, batches[i], rows) for i, rows in wanted.items()]
    return merge_validation(plan, parts, fetched)
