"""Content checks: Great Expectations 1.x suites kept as JSON in ``expectations/``.

A suite file is GX's ExpectationSuite JSON (``name``, ``expectations: [{type, kwargs,
meta}]``) where every expectation says how bad a failure is in ``meta.severity``
(critical blocks publishing, warning is reported). GX takes ~2.3 s to import, so it is
imported inside the functions that need it, never at module import.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from civicflow.quality.report import MAX_EXAMPLES, SEVERITIES, Check, describe_rows, json_safe
from civicflow.spec.errors import SpecError, SpecProblem
from civicflow.spec.loader import load_dataset
from civicflow.spec.models import DatasetSpec

if TYPE_CHECKING:
    from great_expectations.core.expectation_suite import ExpectationSuite
    from great_expectations.expectations.expectation import Expectation

_SUITE_KEYS = {"name", "id", "expectations", "suite_parameters", "meta", "notes"}
_EXPECTATION_KEYS = {
    "type",
    "kwargs",
    "meta",
    "id",
    "notes",
    "description",
    "severity",
    "rendered_content",
}
_COLUMN_KWARGS = ("column", "column_A", "column_B")
_COLUMN_LIST_KWARGS = ("column_list", "column_set")
_POSITION = "civicflow_position"
_UNIQUENESS = {"expect_column_values_to_be_unique", "expect_compound_columns_to_be_unique"}
RESULT_FORMAT = {"result_format": "SUMMARY", "partial_unexpected_count": MAX_EXAMPLES}
# COMPLETE adds ``unexpected_index_list``: every failing row of a map expectation, which
# quarantine needs (SUMMARY stops at the partial list). Only asked for then: on 1M rows
# all failing, GX took 148 s against SUMMARY's 115 s (50,170 failing: 3.3 s vs 3.2 s).
# The index query string would repeat the whole list.
ALL_ROWS_FORMAT = {
    **RESULT_FORMAT,
    "result_format": "COMPLETE",
    "return_unexpected_index_query": False,
}


def expectation_columns(kwargs: dict[str, Any]) -> list[tuple[str, str]]:
    """(kwargs key path, column) for every column an expectation's kwargs name."""
    found: list[tuple[str, str]] = []
    for key in _COLUMN_KWARGS:
        if isinstance(kwargs.get(key), str):
            found.append((key, kwargs[key]))
    for key in _COLUMN_LIST_KWARGS:
        if isinstance(kwargs.get(key), list):
            found.extend((f"{key}.{i}", c) for i, c in enumerate(kwargs[key]) if isinstance(c, str))
    found.extend(_condition_columns(kwargs.get("row_condition"), "row_condition"))
    return found


def _condition_columns(node: Any, where: str) -> list[tuple[str, str]]:
    """Columns in a structured GX row condition (``{"column": {"name": ...}, ...}``, nested
    through and/or lists). String conditions (deprecated in GX 1.9) cannot be checked."""
    if isinstance(node, list):
        return [
            found
            for i, item in enumerate(node)
            for found in _condition_columns(item, f"{where}.{i}")
        ]
    if not isinstance(node, dict):
        return []
    found = []
    column = node.get("column")
    if isinstance(column, dict) and isinstance(column.get("name"), str):
        found.append((f"{where}.column.name", column["name"]))
    for key, value in node.items():
        if key != "column" and isinstance(value, (dict, list)):
            found.extend(_condition_columns(value, f"{where}.{key}"))
    return found


def _spec_for(path: Path) -> DatasetSpec:
    """The dataset spec a suite is checked against: datasets/<suite>.yaml beside expectations/."""
    candidate = path.resolve().parent.parent / "datasets" / f"{path.stem}.yaml"
    if not candidate.is_file():
        raise SpecError(
            [
                SpecProblem(
                    path,
                    "",
                    f"no dataset spec {candidate} to check the suite's columns against (pass spec=)",
                )
            ]
        )
    return load_dataset(candidate)


def _read_json(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError([SpecProblem(path, "", "expectation suite file not found")]) from None
    except UnicodeDecodeError as exc:
        raise SpecError(
            [SpecProblem(path, "", f"not UTF-8 text ({exc.reason} at byte {exc.start})")]
        ) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise SpecError(
            [
                SpecProblem(
                    path, "", f"JSON does not parse: {exc.msg} (column {exc.colno})", exc.lineno
                )
            ]
        ) from None


def _build_expectation(
    path: Path, i: int, item: Any, fields: set[str], problems: list[SpecProblem]
) -> Expectation | None:
    from great_expectations.exceptions import (
        ExpectationNotFoundError,
        InvalidExpectationConfigurationError,
    )
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration
    from great_expectations.expectations.metadata_types import FailureSeverity
    from great_expectations.expectations.registry import get_expectation_impl
    from pydantic import ValidationError as V2Error
    from pydantic.v1 import ValidationError as V1Error

    key = f"expectations.{i}"
    if not isinstance(item, dict):
        problems.append(SpecProblem(path, key, f"expected an object, got {type(item).__name__}"))
        return None
    before = len(problems)
    for unknown in sorted(set(item) - _EXPECTATION_KEYS):
        problems.append(
            SpecProblem(
                path,
                f"{key}.{unknown}",
                f"unknown key (allowed: {', '.join(sorted(_EXPECTATION_KEYS))})",
            )
        )
    etype, kwargs, meta = item.get("type"), item.get("kwargs", {}), item.get("meta", {})
    if not isinstance(etype, str):
        problems.append(
            SpecProblem(
                path,
                f"{key}.type",
                "missing or not a string (e.g. expect_column_values_to_not_be_null)",
            )
        )
    else:
        try:
            get_expectation_impl(etype)
        except ExpectationNotFoundError:
            problems.append(SpecProblem(path, f"{key}.type", f"unknown expectation type {etype!r}"))
    if not isinstance(kwargs, dict):
        problems.append(SpecProblem(path, f"{key}.kwargs", "must be an object"))
        kwargs = {}
    for sub, column in expectation_columns(kwargs):
        if column not in fields:
            problems.append(
                SpecProblem(
                    path,
                    f"{key}.kwargs.{sub}",
                    f"column {column!r} is not a field of the dataset spec",
                )
            )
    severity = meta.get("severity") if isinstance(meta, dict) else None
    if severity not in SEVERITIES:
        got = "missing" if severity is None else f"{severity!r} is not valid"
        problems.append(
            SpecProblem(
                path, f"{key}.meta.severity", f"{got}: must be one of {', '.join(SEVERITIES)}"
            )
        )
    elif "severity" in item and item["severity"] != severity:
        problems.append(
            SpecProblem(
                path,
                f"{key}.severity",
                f"{item['severity']!r} disagrees with meta.severity {severity!r}",
            )
        )
    if len(problems) > before or not isinstance(etype, str):
        return None
    try:
        config = ExpectationConfiguration(
            type=etype,
            kwargs=kwargs,
            meta=meta,
            notes=item.get("notes"),
            description=item.get("description"),
            severity=FailureSeverity(severity),
        )
        return config.to_domain_obj()
    except (V1Error, V2Error) as exc:  # GX expectations are pydantic.v1 models
        messages: dict[str, list[str]] = {}
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"] if p != "__root__")
            messages.setdefault(f"{key}.kwargs.{where}" if where else f"{key}.kwargs", []).append(
                err["msg"]
            )
        # a union-typed kwarg reports one error per alternative: keep them on one line
        problems.extend(
            SpecProblem(path, k, "; ".join(dict.fromkeys(v))) for k, v in messages.items()
        )
    except InvalidExpectationConfigurationError as exc:
        problems.append(SpecProblem(path, f"{key}.kwargs", str(exc)))
    return None


def load_suite(path: Path | str, spec: DatasetSpec | None = None) -> ExpectationSuite:
    """Load and check a suite file; every problem (file, key, message) in one SpecError.

    Columns are checked against ``spec`` (default: ``datasets/<suite>.yaml`` beside the
    ``expectations/`` folder).
    """
    import great_expectations as gx

    path = Path(path)
    data = _read_json(path)
    if not isinstance(data, dict):
        raise SpecError(
            [
                SpecProblem(
                    path, "", f"expected an object at the top level, got {type(data).__name__}"
                )
            ]
        )
    problems: list[SpecProblem] = []
    for unknown in sorted(set(data) - _SUITE_KEYS):
        problems.append(
            SpecProblem(path, unknown, f"unknown key (allowed: {', '.join(sorted(_SUITE_KEYS))})")
        )
    if data.get("name") != path.stem:
        problems.append(
            SpecProblem(
                path, "name", f"must be the file name {path.stem!r} (got {data.get('name')!r})"
            )
        )
    items = data.get("expectations")
    if not isinstance(items, list) or not items:
        problems.append(SpecProblem(path, "expectations", "must be a non-empty list"))
        items = []
    spec = spec or _spec_for(path)
    fields = {f.name for f in spec.fields}
    built = [_build_expectation(path, i, item, fields, problems) for i, item in enumerate(items)]
    if problems:
        raise SpecError(problems)
    return gx.ExpectationSuite(
        name=path.stem, expectations=[e for e in built if e is not None], meta=data.get("meta")
    )


def check_suite(path: Path | str, spec: DatasetSpec, cache_dir: Path | None = None) -> None:
    """``load_suite``'s checks, remembered: SpecError on any problem, else nothing.

    Importing GX to build a suite costs seconds, more than a whole unchanged run; a CLI
    call checks each suite before its run starts. With ``cache_dir`` a suite that passed
    is remembered by the hash of its bytes, its spec and the GX version, so an unchanged
    pair is not checked again (the run's validate stage still builds the suite itself).
    """
    from importlib import metadata

    from civicflow.privatefs import private_dir, write_private

    path = Path(path)
    key = None
    if cache_dir is not None and path.is_file():
        digest = hashlib.sha256(path.read_bytes())
        digest.update(spec.model_dump_json().encode())
        digest.update(metadata.version("great_expectations").encode())
        key = cache_dir / f"{path.stem}-{digest.hexdigest()[:32]}"
        if key.is_file():
            return
    load_suite(path, spec)
    if key is not None:
        private_dir(key.parent)
        write_private(key, "checked\n")


def _columns_of(expectation: Expectation) -> list[str]:
    return [c for _, c in expectation_columns(expectation.configuration.kwargs)]


def _restore(value: Any, integer: bool) -> Any:
    """An integer column GX saw as float64 reports 16, not 16.0."""
    return int(value) if integer and isinstance(value, float) and value.is_integer() else value


def _examples(
    result: dict[str, Any], columns: list[str], row_key: str, integers: set[str]
) -> list[dict[str, Any]]:
    indexed = result.get("partial_unexpected_index_list")
    if indexed:
        out = []
        for entry in indexed[:MAX_EXAMPLES]:
            if not isinstance(entry, dict):  # GX gives bare index values for some expectations
                out.append({"row": json_safe(entry), "value": None})
                continue
            values = {c: _restore(entry[c], c in integers) for c in columns if c in entry}
            value = next(iter(values.values())) if len(values) == 1 else values
            out.append({"row": json_safe(entry.get(row_key)), "value": json_safe(value)})
        return out
    single = len(columns) == 1 and columns[0] in integers
    return [
        {"row": None, "value": json_safe(_restore(v, single))}
        for v in (result.get("partial_unexpected_list") or [])[:MAX_EXAMPLES]
    ]


def _failing_rows(body: dict[str, Any], row_key: str) -> np.ndarray | None:
    """Row numbers of every failing row, or None for an expectation that is not row-level.

    Only map expectations (a verdict per row) return ``unexpected_index_list``; table and
    aggregate ones (row count, a column's mean) cannot blame a row.
    """
    indexed = body.get("unexpected_index_list")
    if indexed is None:
        return None
    # one entry per failing row; GX gives dicts {row_key: n, column: value} or bare indexes
    return np.fromiter(
        (e[row_key] if isinstance(e, dict) else e for e in indexed),
        dtype=np.int64,
        count=len(indexed),
    )


def _exception_message(info: Any) -> str | None:
    """GX catches exceptions per expectation; find one so it is reported, not swallowed."""
    if not isinstance(info, dict):
        return None
    if info.get("raised_exception"):
        return str(info.get("exception_message"))
    for value in info.values():  # 1.x keys exception info by metric id
        if isinstance(value, dict) and value.get("raised_exception"):
            return str(value.get("exception_message"))
    return None


def _to_check(
    expectation: Expectation, result: Any, rows: int, row_key: str, integers: set[str]
) -> Check:
    config = expectation.configuration
    columns = _columns_of(expectation)
    body: dict[str, Any] = dict(result.result or {})
    severity = config.meta["severity"]
    details = {"kwargs": json_safe(config.kwargs)}
    error = _exception_message(result.exception_info)
    if error is not None:
        # The error text can quote a value (e.g. a failed conversion): report only.
        details["error"] = error
        return Check(
            "content",
            config.type,
            columns,
            severity,
            "failed",
            0,
            [],
            "expectation raised an error (its message is in the report)",
            details,
        )
    count = int(body.get("unexpected_count") or 0)
    examples = _examples(body, columns, row_key, integers) if not result.success else []
    if "observed_value" in body:
        details["observed_value"] = json_safe(body["observed_value"])
    message = "passed" if result.success else _failure_message(config.type, body, examples, rows)
    return Check(
        "content",
        config.type,
        columns,
        severity,
        "passed" if result.success else "failed",
        count,
        examples,
        message,
        details,
        _failing_rows(body, row_key),
    )


def _failure_message(
    etype: str, body: dict[str, Any], examples: list[dict[str, Any]], rows: int
) -> str:
    """Public text of a failed expectation: counts and row numbers, never a value.

    An observed value (a column's max, its distinct values) is source data and stays in
    ``details``; only a table-level count (row or column count) is quoted.
    """
    if "unexpected_count" in body:
        count = int(body.get("unexpected_count") or 0)
        where = describe_rows(examples, count)
        text = f"{count:,} of {body.get('element_count', rows):,} rows unexpected"
        return f"{text} ({where})" if where else text
    observed = body.get("observed_value")
    if etype.startswith("expect_table_") and isinstance(observed, int):
        return f"observed {observed:,}"
    return "observed value outside the expectation (the value is in the report)"


def without_covered(
    suite: ExpectationSuite, unique_sets: set[frozenset[str]]
) -> tuple[ExpectationSuite, list[str]]:
    """``suite`` without uniqueness expectations the structure check already makes.

    A GX uniqueness failure over a key implies the structure check's failure over the
    same key (a subset or a row condition cannot add duplicates), so running both
    only reports one duplicate twice. Returns the rest and a line per expectation left out.
    """
    import great_expectations as gx

    kept, covered = [], []
    for exp in suite.expectations:
        columns = frozenset(_columns_of(exp)) - _condition_only(exp)
        if exp.configuration.type in _UNIQUENESS and columns in unique_sets:
            covered.append(f"{exp.configuration.type} {', '.join(sorted(columns))}")
        else:
            kept.append(exp)
    if not covered:
        return suite, []
    return gx.ExpectationSuite(name=suite.name, expectations=kept, meta=suite.meta), covered


def _condition_only(expectation: Expectation) -> frozenset[str]:
    """Columns an expectation reads only in its row condition."""
    kwargs = expectation.configuration.kwargs
    named = {c for k, c in expectation_columns(kwargs) if not k.startswith("row_condition")}
    return frozenset(c for _, c in _condition_columns(kwargs.get("row_condition"), "")) - named


def _silence_gx() -> None:
    # GX logs expected per-expectation failures at WARNING/ERROR; our report carries them.
    logging.getLogger("great_expectations").setLevel(logging.CRITICAL)


def _vectorisable(view: pd.DataFrame, expectations: list[Expectation]) -> pd.DataFrame:
    """Retype columns GX would otherwise check value by value in Python.

    GX 1.24 only vectorises comparisons on numpy int/float and datetime64[ns] columns;
    nullable Int64 and datetime64[s] go through a per-value lambda (~1 s per million).
    Skipped when an expectation in the group asserts the column's type itself.
    """
    if any("_type" in e.configuration.type for e in expectations):
        return view
    changed: dict[str, pd.Series] = {}
    for name in view.columns:
        col = view[name]
        if isinstance(
            col.dtype, pd.api.extensions.ExtensionDtype
        ) and pd.api.types.is_integer_dtype(col.dtype):
            changed[name] = pd.Series(
                col.to_numpy(dtype="float64", na_value=np.nan), index=col.index
            )
        elif (
            isinstance(col.dtype, np.dtype)
            and col.dtype.kind == "M"
            and col.dtype != np.dtype("datetime64[ns]")
        ):
            # a date outside 1677-2262 cannot be ns: it stays as it is (slower path in GX)
            with contextlib.suppress(pd.errors.OutOfBoundsDatetime, OverflowError):
                changed[name] = col.dt.as_unit("ns")
    return view.assign(**changed) if changed else view


def _groups(expectations: list[Expectation]) -> dict[tuple[str, ...] | None, list[int]]:
    """Positions of expectations grouped by the columns they read (None: the whole table)."""
    groups: dict[tuple[str, ...] | None, list[int]] = {}
    for n, exp in enumerate(expectations):
        columns = _columns_of(exp)
        # table expectations and row conditions (which read other columns) need every column
        whole = (
            exp.configuration.type.startswith("expect_table_")
            or not columns
            or exp.configuration.kwargs.get("row_condition")
        )
        groups.setdefault(None if whole else tuple(dict.fromkeys(columns)), []).append(n)
    return groups


def skipped_check(expectation: Expectation, absent: list[str]) -> Check:
    """The check of an expectation not run because columns it names are missing."""
    return Check(
        "content",
        expectation.configuration.type,
        _columns_of(expectation),
        expectation.configuration.meta["severity"],
        "skipped",
        message=f"not run: column(s) {', '.join(absent)} missing from the source",
    )


def columns_of(expectation: Expectation) -> list[str]:
    """Every column an expectation reads (its row condition's too), in kwargs order."""
    return _columns_of(expectation)


def split_runnable(
    expectations: Iterable[Expectation], skip_columns: Iterable[str] = ()
) -> tuple[list[Expectation], list[Check | None]]:
    """The expectations that can run, and per suite position its skipped Check, or None
    where it runs (the next runnable one, in order)."""
    skip = set(skip_columns)
    runnable: list[Expectation] = []
    slots: list[Check | None] = []
    for exp in expectations:
        absent = [c for c in _columns_of(exp) if c in skip]
        if absent:
            slots.append(skipped_check(exp, absent))
        else:
            runnable.append(exp)
            slots.append(None)
    return runnable, slots


def row_key(frame: pd.DataFrame) -> str:
    """The name GX gives the row number in its failing-row lists."""
    return str(frame.index.name or "row")


def integer_columns(frame: pd.DataFrame) -> set[str]:
    return {str(c) for c in frame.columns if pd.api.types.is_integer_dtype(frame[c].dtype)}


def expectation_results(
    suite_name: str, expectations: list[Expectation], frame: pd.DataFrame, all_rows: bool = False
) -> list[Any]:
    """GX's validation result of each expectation on ``frame``, in the given order.

    ``all_rows``: map expectations list every failing row (COMPLETE), else the first
    MAX_EXAMPLES (SUMMARY).
    """
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    if not expectations:
        return []
    _silence_gx()
    key = row_key(frame)
    if frame.index.name is None:
        frame = frame.rename_axis(key)
    ctx = gx.get_context(mode="ephemeral")
    ctx.variables.progress_bars = ProgressBarsConfig(globally=False)
    batches = (
        ctx.data_sources.add_pandas("civicflow")
        .add_dataframe_asset("extract")
        .add_batch_definition_whole_dataframe("all")
    )
    results: dict[int, Any] = {}
    for columns, members in _groups(expectations).items():
        # Each group sees only its own columns: GX hashes the whole batch and filters
        # every column of it per metric, which over 33 columns x 1M rows costs more
        # than the checks themselves.
        view = (
            frame
            if columns is None
            else _vectorisable(frame[list(columns)], [expectations[n] for n in members])
        )
        batch = batches.get_batch(batch_parameters={"dataframe": view})
        # GX does not keep suite order in its results (nor allow ids on unsaved
        # suites): tag each expectation's meta with its position to pair them back.
        tagged = []
        for n in members:
            config = expectations[n].configuration
            config.meta = {**config.meta, _POSITION: n}
            tagged.append(config.to_domain_obj())
        outcome = batch.validate(
            gx.ExpectationSuite(name=suite_name, expectations=tagged),
            result_format=ALL_ROWS_FORMAT if all_rows else RESULT_FORMAT,
        )
        for r in outcome.results:
            position = r.expectation_config.meta.get(_POSITION) if r.expectation_config else None
            if position is None:
                raise RuntimeError(
                    f"suite {suite_name}: GX returned a result without its expectation"
                )
            results[position] = r
    if set(results) != set(range(len(expectations))):
        raise RuntimeError(
            f"suite {suite_name}: GX returned results for {len(results)} of {len(expectations)} expectations"
        )
    return [results[n] for n in range(len(expectations))]


def expectation_check(
    expectation: Expectation, result: Any, rows: int, row_key: str, integers: set[str]
) -> Check:
    """The Check of one GX result (anything with ``success``, ``result`` and
    ``exception_info``) over a table of ``rows`` rows."""
    return _to_check(expectation, result, rows, row_key, integers)


def raised(exception_info: Any) -> bool:
    """Whether GX caught an exception while running the expectation."""
    return _exception_message(exception_info) is not None


def checked_columns(expectation: Expectation) -> list[str]:
    """The columns an expectation checks (not those only its row condition reads)."""
    only_condition = _condition_only(expectation)
    return [c for c in dict.fromkeys(_columns_of(expectation)) if c not in only_condition]


def run_suite(
    suite: ExpectationSuite,
    frame: pd.DataFrame,
    skip_columns: Iterable[str] = (),
    all_rows: bool = False,
) -> list[Check]:
    """Validate the typed frame (whole dataframe batch); one Check per expectation.

    Expectations naming a column in ``skip_columns`` (missing from the source) are not
    run and come back as skipped checks saying why. ``all_rows``: map expectations keep
    every failing row number in ``Check.rows`` (for quarantine); otherwise it is None.
    """
    runnable, slots = split_runnable(suite.expectations, skip_columns)
    results = iter(expectation_results(suite.name, runnable, frame, all_rows))
    key, integers = row_key(frame), integer_columns(frame)
    pending = iter(runnable)
    return [
        slot
        if slot is not None
        else expectation_check(next(pending), next(results), len(frame), key, integers)
        for slot in slots
    ]
