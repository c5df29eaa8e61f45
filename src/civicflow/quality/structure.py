"""Structure check: the extract against the spec's Table Schema, over every row, vectorised.

Check names are frictionless error codes (missing-label, extra-label, type-error,
constraint-error, unique-error, primary-key) so reports read like frictionless output.
frictionless itself is used where it is cheap: building and validating the Table Schema
descriptor, and matching the one header row. Its row-by-row ``validate`` (~42k rows/s)
is too slow for million-row extracts, so the cell checks below are Arrow/pandas masks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from civicflow.quality.report import MAX_EXAMPLES, Check, describe_rows, json_safe
from civicflow.sources.base import Extract
from civicflow.spec.models import DatasetSpec, FieldSpec, TabularSource

_NUMERIC = ("integer", "number")


# --- Table Schema ---------------------------------------------------------------------------


def _enum_values(f: FieldSpec, values: list[Any]) -> list[Any]:
    if f.type == "integer":
        return [int(v) for v in values]
    if f.type == "number":
        return [float(v) for v in values]
    return [str(v) for v in values]


def _field_descriptor(spec: DatasetSpec, f: FieldSpec) -> dict[str, Any]:
    desc: dict[str, Any] = {"name": f.name, "type": f.type, "description": f.description}
    if f.source_name != f.name:
        desc["source"] = f.source_name  # custom property: the header in the source file
    if f.type in ("date", "datetime"):
        formats = f.formats or (
            spec.source.timestamp_formats if isinstance(spec.source, TabularSource) else []
        )
        # Table Schema takes one strptime pattern; several tried in order can only be "any".
        desc["format"] = formats[0] if len(formats) == 1 else "any"
    if f.unit:
        desc["unit"] = f.unit
    constraints: dict[str, Any] = {}
    if not f.nullable or f.name in spec.primary_key:
        constraints["required"] = True
    c = f.constraints
    if c is not None:
        if c.enum is not None:
            constraints["enum"] = _enum_values(f, c.enum)
        if c.minimum is not None:
            constraints["minimum"] = int(c.minimum) if f.type == "integer" else c.minimum
        if c.maximum is not None:
            constraints["maximum"] = int(c.maximum) if f.type == "integer" else c.maximum
        if c.pattern is not None:
            constraints["pattern"] = c.pattern
        if c.min_length is not None:
            constraints["minLength"] = c.min_length
        if c.max_length is not None:
            constraints["maxLength"] = c.max_length
        if c.unique:
            constraints["unique"] = True
    if constraints:
        desc["constraints"] = constraints
    return desc


def table_schema(spec: DatasetSpec) -> dict[str, Any]:
    """The spec as a frictionless Table Schema (published names; ``source`` = source header).

    Raises ValueError if frictionless rejects the descriptor (a bug here, not in the spec).
    """
    from frictionless import Schema

    descriptor: dict[str, Any] = {"fields": [_field_descriptor(spec, f) for f in spec.fields]}
    if spec.primary_key:
        descriptor["primaryKey"] = list(spec.primary_key)
    if isinstance(spec.source, TabularSource):
        descriptor["missingValues"] = list(spec.source.null_values)
    report = Schema.validate_descriptor(descriptor)
    if not report.valid:
        notes = "; ".join(e.message for e in report.errors)
        raise ValueError(f"dataset {spec.id}: generated Table Schema is invalid: {notes}")
    return descriptor


# --- checks ---------------------------------------------------------------------------------


@dataclass
class StructureResult:
    checks: list[Check]
    #: spec fields whose source column is absent (their cell checks were not run)
    missing_fields: set[str] = field(default_factory=set)


def _positions(mask: np.ndarray) -> np.ndarray:
    return np.flatnonzero(mask)


def _examples(rows: np.ndarray, values: list[Any]) -> list[dict[str, Any]]:
    return [{"row": int(r), "value": json_safe(v)} for r, v in zip(rows, values, strict=True)]


def _type_errors(
    raw: pa.ChunkedArray, typed_null: np.ndarray, sentinels: list[float]
) -> np.ndarray:
    """Where a source value is present but its typed value is null: it did not parse."""
    bad: np.ndarray = pc.is_valid(raw).to_numpy(zero_copy_only=False) & typed_null
    if sentinels and bad.any():
        # A transform turned sentinel coordinates (e.g. 0) into null: not a type error.
        as_number = pd.to_numeric(pd.Series(raw.to_pandas()), errors="coerce")
        bad &= ~as_number.isin(sentinels).to_numpy()
    return bad


def type_error_mask(
    spec: DatasetSpec, raw: pa.Table, frame: pd.DataFrame, f: FieldSpec
) -> np.ndarray:
    """Rows of ``f`` whose source text does not parse as its declared type (the
    type-error check's mask; schema drift counts it to tell a retyped column)."""
    typed_null = frame[f.name].isna().to_numpy()
    return _type_errors(raw[f.source_name], typed_null, _sentinels(spec).get(f.name, []))


class _Columns:
    """Per-field masks shared by several checks (computed once per column)."""

    def __init__(self, extract: Extract, f: FieldSpec, sentinels: list[float]):
        self.field = f
        self.raw: pa.ChunkedArray = extract.raw[f.source_name]
        self.typed: pd.Series = extract.frame[f.name]
        self.rows = extract.frame.index.to_numpy()
        typed_null = self.typed.isna().to_numpy()
        bad = _type_errors(self.raw, typed_null, sentinels)
        self.type_error = bad
        self.null = typed_null & ~bad
        self.present = ~typed_null

    def raw_values(self, positions: np.ndarray) -> list[Any]:
        return self.raw.take(pa.array(positions, pa.int64())).to_pylist()

    def typed_values(self, positions: np.ndarray) -> list[Any]:
        return self.typed.iloc[positions].tolist()

    def check(
        self, name: str, bad: np.ndarray, what: str, *, raw: bool, details: dict[str, Any]
    ) -> Check:
        pos = _positions(bad)[:MAX_EXAMPLES]
        values = self.raw_values(pos) if raw else self.typed_values(pos)
        return cell_check(self.field.name, name, bad, self.rows, values, what, details)


def cell_message(count: int, examples: list[dict[str, Any]], what: str) -> str:
    """The public message of a cell check: ``what`` comes from the spec (type,
    constraint), the rows from the index; the values stay in ``examples``."""
    if not count:
        return f"no value {what}"
    return (
        f"{count:,} {'value' if count == 1 else 'values'} {what} ({describe_rows(examples, count)})"
    )


def cell_check(
    column: str,
    name: str,
    bad: np.ndarray,
    rows: np.ndarray,
    values: list[Any],
    what: str,
    details: dict[str, Any],
) -> Check:
    """A cell check on one column: ``bad`` per row, ``rows`` their numbers, ``values``
    those of the first MAX_EXAMPLES bad rows (the examples)."""
    count = int(bad.sum())
    examples = _examples(rows[_positions(bad)[:MAX_EXAMPLES]], values)
    return Check(
        layer="structure",
        name=name,
        columns=[column],
        severity="critical",
        status="failed" if count else "passed",
        unexpected_count=count,
        examples=examples,
        message=cell_message(count, examples, what),
        details=details,
        rows=rows[bad],
        what=what,
    )


def unique_error_check(f: FieldSpec, typed: pd.Series) -> Check:
    """unique-error on one field: every present value that is repeated (the typed values
    of the first repeats are the examples). ``typed`` may be any subset of the column
    holding all its repeats: the row numbers come from its index."""
    present = typed.notna().to_numpy()
    dup = typed.duplicated(keep=False).to_numpy() & present
    pos = _positions(dup)[:MAX_EXAMPLES]
    return cell_check(
        f.name,
        "unique-error",
        dup,
        typed.index.to_numpy(),
        typed.iloc[pos].tolist(),
        "repeated (unique)",
        {"constraint": "unique"},
    )


def _header_checks(spec: DatasetSpec, labels: list[str]) -> tuple[list[Check], set[str]]:
    """missing-label / extra-label, matched by name with frictionless' Header.

    Using frictionless here costs one row and keeps our label rules identical to its
    ``fieldsMatch: equal`` semantics (order-free, every field present, nothing extra).
    """
    from frictionless import Schema
    from frictionless.table.header import Header

    by_source = {f.source_name: f for f in spec.fields}
    label_schema = Schema.from_descriptor(
        {"fields": [{"name": s, "type": "any"} for s in by_source]}
    )
    header = Header(labels, fields=label_schema.fields, row_numbers=[1], fields_match="equal")
    missing = [e for e in header.errors if e.type == "missing-label"]
    extra = [e for e in header.errors if e.type == "extra-label"]
    unknown = [e for e in header.errors if e.type not in ("missing-label", "extra-label")]
    if unknown:  # not expected with fields_match="equal"; surface rather than drop
        raise RuntimeError(
            f"dataset {spec.id}: unexpected header errors: {[e.message for e in unknown]}"
        )

    missing_fields = [by_source[e.field_name] for e in missing]
    missing_examples = [{"row": None, "value": f.source_name} for f in missing_fields]
    missing_check = Check(
        layer="structure",
        name="missing-label",
        columns=[f.name for f in missing_fields],
        severity="critical",
        status="failed" if missing else "passed",
        unexpected_count=len(missing),
        examples=missing_examples[:MAX_EXAMPLES],
        message=(
            f"{len(missing)} declared column{'s' if len(missing) != 1 else ''} missing from the source: "
            + ", ".join(f"{f.source_name!r} (field {f.name})" for f in missing_fields)
            if missing
            else "every declared column is present"
        ),
    )
    extra_examples = [{"row": None, "value": e.label, "position": e.field_number} for e in extra]
    # ignore_new: new columns are reported, not published (the typed frame holds spec
    # fields only), so they warn instead of blocking
    ignored = spec.on_schema_change == "ignore_new"
    extra_check = Check(
        layer="structure",
        name="extra-label",
        columns=[],
        severity="warning" if ignored else "critical",
        status="failed" if extra else "passed",
        unexpected_count=len(extra),
        examples=extra_examples[:MAX_EXAMPLES],
        # Positions only: a file without its header row would put data in the labels.
        message=(
            f"{len(extra)} source column{'s' if len(extra) != 1 else ''} not in the spec"
            + (", not published (on_schema_change: ignore_new)" if ignored else "")
            + ", at "
            + ("position " if len(extra) == 1 else "positions ")
            + ", ".join(str(e.field_number) for e in extra)
            if extra
            else "no undeclared columns"
        ),
    )
    return [missing_check, extra_check], {f.name for f in missing_fields}


def _fullmatch(values: pa.ChunkedArray, pattern: str) -> np.ndarray:
    """Where each non-null string fully matches ``pattern`` (nulls -> True)."""
    try:
        matched = pc.match_substring_regex(values, f"^(?:{pattern})$")
        return pc.fill_null(matched, True).to_numpy(zero_copy_only=False)
    except pa.ArrowInvalid:
        # RE2 lacks some Python regex features (look-around, backreferences): fall back
        # to pandas' vectorised str.fullmatch, which uses Python's re.
        series = pd.Series(values.to_pandas(), dtype=object)
        return series.str.fullmatch(pattern).fillna(True).astype(bool).to_numpy()


def _constraint_checks(cols: _Columns, primary_key: list[str]) -> list[Check]:
    f = cols.field
    c = f.constraints
    if c is None:
        return []
    out: list[Check] = []

    def constraint(name: str, value: Any, bad: np.ndarray, what: str, raw: bool = False) -> None:
        details = {"constraint": name, "value": value}
        out.append(
            cols.check("constraint-error", bad & cols.present, what, raw=raw, details=details)
        )

    if c.enum is not None:
        allowed = _enum_values(f, c.enum) if f.type in (*_NUMERIC, "string", "geopoint") else None
        if allowed is not None:
            inside = cols.typed.isin(allowed).to_numpy(dtype=bool)
        else:  # boolean/date enums: compare the source text
            inside = pc.fill_null(
                pc.is_in(cols.raw, value_set=pa.array([str(v) for v in c.enum])), True
            ).to_numpy(zero_copy_only=False)
        constraint("enum", c.enum, ~inside, f"not in {c.enum}")
    if f.type in _NUMERIC:
        numbers = cols.typed.to_numpy(dtype="float64", na_value=np.nan)
        if c.minimum is not None:
            with np.errstate(invalid="ignore"):
                constraint(
                    "minimum", c.minimum, numbers < c.minimum, f"below the minimum {c.minimum:g}"
                )
        if c.maximum is not None:
            with np.errstate(invalid="ignore"):
                constraint(
                    "maximum", c.maximum, numbers > c.maximum, f"above the maximum {c.maximum:g}"
                )
    if c.pattern is not None:
        constraint(
            "pattern",
            c.pattern,
            ~_fullmatch(cols.raw, c.pattern),
            f"do not match the pattern {c.pattern!r}",
            raw=True,
        )
    if c.min_length is not None or c.max_length is not None:
        lengths = pc.utf8_length(cols.raw).to_numpy(zero_copy_only=False)
        lengths = np.nan_to_num(np.asarray(lengths, dtype="float64"), nan=0)
        if c.min_length is not None:
            constraint(
                "minLength",
                c.min_length,
                lengths < c.min_length,
                f"shorter than {c.min_length} characters",
                raw=True,
            )
        if c.max_length is not None:
            constraint(
                "maxLength",
                c.max_length,
                lengths > c.max_length,
                f"longer than {c.max_length} characters",
                raw=True,
            )
    if unique_field(f, primary_key):
        out.append(unique_error_check(f, cols.typed))
    return out


def unique_field(f: FieldSpec, primary_key: list[str]) -> bool:
    """Whether ``f`` gets its own unique-error check (a one-column key is checked by the
    primary-key check: one report per duplicate)."""
    return bool(f.constraints and f.constraints.unique) and [f.name] != list(primary_key)


def primary_key_check(
    spec: DatasetSpec, frame: pd.DataFrame, missing_fields: set[str], rows: int | None = None
) -> Check:
    """The primary-key check over ``frame``'s key columns (index = row numbers).

    ``rows``: the table's row count when ``frame`` holds only some of its rows (those
    whose key may repeat); the passed message counts it. Default ``len(frame)``.
    """
    key = list(spec.primary_key)
    absent = [k for k in key if k in missing_fields]
    if absent:
        return Check(
            "structure",
            "primary-key",
            key,
            "critical",
            "skipped",
            message=f"not run: key column(s) {', '.join(absent)} missing",
        )
    keys = frame[key]
    complete = keys.notna().all(axis=1).to_numpy()
    dup = keys.duplicated(keep=False).to_numpy() & complete
    if not dup.any():
        return Check(
            "structure",
            "primary-key",
            key,
            "critical",
            "passed",
            message=f"{', '.join(key)} unique over {len(frame) if rows is None else rows:,} rows",
            rows=frame.index.to_numpy()[:0],
        )
    # Name every row of a duplicate group together: sort by key, then take whole groups.
    dups = keys[dup].sort_values(key, kind="stable")
    group = dups.groupby(key, sort=False, dropna=False).ngroup().to_numpy()
    starts = np.flatnonzero(np.r_[True, group[1:] != group[:-1]])
    sizes = np.diff(np.r_[starts, len(group)])
    n_groups = len(starts)
    taken = max(1, int(np.searchsorted(np.cumsum(sizes), MAX_EXAMPLES, side="right")))
    head = dups.iloc[: min(MAX_EXAMPLES, int(sizes[:taken].sum()))]
    values = head[key[0]].tolist() if len(key) == 1 else head.to_dict("records")
    examples = _examples(head.index.to_numpy(), values)
    # Public message: each group by its row numbers; the key values stay in ``examples``.
    parts = []
    for start, size in zip(starts[:3], sizes[:3], strict=True):
        group_rows = [{"row": int(r)} for r in dups.index[start : start + size][:5]]
        parts.append(describe_rows(group_rows, int(size)))
    more = "; ..." if n_groups > 3 else ""
    count = int(dup.sum())
    message = f"{n_groups:,} duplicate{'s' if n_groups != 1 else ''} in {count:,} rows ({'; '.join(parts)}{more})"
    return Check(
        "structure",
        "primary-key",
        key,
        "critical",
        "failed",
        count,
        examples,
        message,
        {"groups": n_groups},
        # every row of a group: which of them is right is for the steward to say
        rows=frame.index.to_numpy()[dup],
    )


def unique_sets(spec: DatasetSpec) -> set[frozenset[str]]:
    """Column sets whose uniqueness the structure check owns (the key, ``unique`` fields).

    A content expectation asserting the same is not run, so one duplicate is one failure.
    """
    sets = {frozenset([f.name]) for f in spec.fields if f.constraints and f.constraints.unique}
    if spec.primary_key:
        sets.add(frozenset(spec.primary_key))
    return sets


def _sentinels(spec: DatasetSpec) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    for t in spec.transforms:
        for name in (t.x_field, t.y_field):
            out[name] = list(t.missing_values)
    return out


def check_structure(spec: DatasetSpec, extract: Extract) -> StructureResult:
    """Every structure check on every row; all failures are critical."""
    # Validating the generated schema is part of the check: it must be real Table Schema.
    table_schema(spec)
    checks, missing = _header_checks(spec, list(extract.raw.column_names))
    sentinels = _sentinels(spec)
    required = set(spec.primary_key)
    for f in spec.fields:
        if f.name in missing:
            continue
        cols = _Columns(extract, f, sentinels.get(f.name, []))
        if f.type != "string":  # a string always parses
            checks.append(
                cols.check(
                    "type-error",
                    cols.type_error,
                    f"do not parse as {f.type}",
                    raw=True,
                    details={"type": f.type},
                )
            )
        if not f.nullable or f.name in required:
            checks.append(
                cols.check(
                    "constraint-error",
                    cols.null,
                    "empty in a required field",
                    raw=False,
                    details={"constraint": "required"},
                )
            )
        checks.extend(_constraint_checks(cols, spec.primary_key))
    if spec.primary_key:
        checks.append(primary_key_check(spec, extract.frame, missing))
    return StructureResult(checks=checks, missing_fields=missing)
