"""The PII scan: run over every column that will be published, after the rules.

Text columns get every text detector (vectorised regex over the whole column; only
candidates that need a checksum or a word check are looked at in Python), plus
coordinates written in text ("(lat, lon)" pairs, WKT geometries) finer than the field's
precision (default 3 decimals). Number columns are checked for coordinates carrying
more decimals than the spec allows; integer columns for phone- and SSN-shaped values;
a column declared ``birth_date`` for anything finer than the year (numbers.py). What a
column is declared to hold (``semantic``) changes how it is read, never whether it is
checked: a column declared ``address`` is scanned for exact addresses with a looser
pattern (no street suffix needed), a coordinate column without a precision is held to
the default, and only a ``pii_allow`` with a reason lets a finding through. Locations
across columns are compared in consistency.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from civicflow.privacy.detectors import (
    ADDRESS_IN_ADDRESS_COLUMN,
    CARD,
    COORDINATE,
    DETECTORS,
    Detector,
    as_text,
    mask,
    number_parts,
    on_distinct,
)
from civicflow.privacy.hits import Hits
from civicflow.privacy.numbers import birth_date_hits, integer_hits
from civicflow.privacy.report import MAX_EXAMPLES, Finding
from civicflow.spec.models import DatasetSpec, FieldSpec

#: decimals a coordinate may carry in a column that does not declare a precision (~100 m)
UNDECLARED_COORDINATE_DECIMALS = 3
COORDINATE_SEMANTICS = ("latitude", "longitude", "geopoint")
_WKT_TYPES = (
    r"(?i:POINT|LINESTRING|POLYGON|MULTIPOINT|MULTILINESTRING|MULTIPOLYGON|GEOMETRYCOLLECTION)"
)


@lru_cache(maxsize=16)
def coordinate_text_detectors(decimals: int) -> tuple[Detector, Detector]:
    """Coordinates written inside text with more than ``decimals`` decimals: a
    "(lat, lon)" pair (comma or space between), and a WKT geometry
    (``POINT (-118.2668619 34.0732166)``) any of whose numbers is that fine."""
    fine = r"\d{1,3}\.\d{" + str(decimals + 1) + ",}"
    pair = Detector(
        COORDINATE, "COORDINATES", rf"[-+]?{fine}(?:\s*,\s*|\s+)[-+]?{fine}", redacts=False
    )
    wkt = Detector(
        COORDINATE,
        "GEOMETRY",
        rf"\b{_WKT_TYPES}\s*(?i:ZM|Z|M)?\s*\([-+\d.,\s()]*?{fine}",
        redacts=False,
    )
    return pair, wkt


def _decimals(text: pa.Array) -> np.ndarray:
    """Digits after the decimal point of number strings (0 without a point, -1 for null)."""
    pos = pc.find_substring(text, ".")
    length = pc.utf8_length(text)
    frac = pc.if_else(pc.less(pos, 0), 0, pc.subtract(pc.subtract(length, pos), 1))
    return np.asarray(pc.fill_null(frac, -1).to_numpy(zero_copy_only=False), dtype=np.int64)


def _number_text(values: pd.Series) -> tuple[pa.Array, pa.Array]:
    """Numbers as their shortest exact decimal text: a value rounded to 3 decimals prints 3."""
    if pd.api.types.is_numeric_dtype(values.dtype):
        arr = pa.array(values.to_numpy(dtype="float64", na_value=np.nan), from_pandas=True)
        text = on_distinct(arr, lambda distinct: pc.cast(distinct, pa.string()))
        return text, pa.nulls(len(values), pa.string())
    return number_parts(values)


def coordinate_decimals(values: pd.Series) -> np.ndarray:
    """Per row, the decimals a number or ``(lat, lon)`` value carries (-1 when empty)."""
    first, second = _number_text(values)
    return np.maximum(_decimals(first), _decimals(second))


@dataclass(frozen=True)
class CoordinateShape:
    """What decides whether an undeclared float column holds coordinates: nearly all
    values finely fractional, inside +-180, and not shares between 0 and 1.

    Counts and extremes only, so the shapes of a column's batches ``merge`` into the
    whole column's.
    """

    present: int
    fine: int  # present values with more than UNDECLARED_COORDINATE_DECIMALS decimals
    out_of_range: int  # present values beyond +-180
    max_abs: float  # the largest absolute value (-inf when none is present)

    @property
    def looks_like(self) -> bool:
        return (
            self.present > 0
            and self.fine / self.present >= 0.9
            and not self.out_of_range
            and self.max_abs > 1
        )

    def merge(self, other: CoordinateShape) -> CoordinateShape:
        return CoordinateShape(
            self.present + other.present,
            self.fine + other.fine,
            self.out_of_range + other.out_of_range,
            max(self.max_abs, other.max_abs),
        )


def _undeclared_float(values: pd.Series, field: FieldSpec) -> bool:
    return field.semantic not in COORDINATE_SEMANTICS and pd.api.types.is_float_dtype(values.dtype)


def _shape(numbers: np.ndarray, fine: np.ndarray) -> CoordinateShape:
    present = ~np.isnan(numbers)
    size = np.abs(numbers[present])
    return CoordinateShape(
        int(present.sum()),
        int(fine[present].sum()),
        int((size > 180).sum()),
        float(size.max(initial=-np.inf)),
    )


def coordinate_shape(values: pd.Series, field: FieldSpec) -> CoordinateShape | None:
    """The shape of an undeclared float column (None for any other column: a declared
    coordinate column is always held to its precision, other types never are)."""
    if not _undeclared_float(values, field):
        return None
    fine = coordinate_decimals(values) > UNDECLARED_COORDINATE_DECIMALS
    return _shape(values.to_numpy(dtype="float64", na_value=np.nan), fine)


def coordinate_hits(
    values: pd.Series,
    field: FieldSpec,
    looks_like: bool | None = None,
    decimals: np.ndarray | None = None,
) -> np.ndarray:
    """Rows whose coordinates carry more decimals than the spec allows.

    ``looks_like``: whether an undeclared float column holds coordinates, when the
    caller decided it from the whole column's ``CoordinateShape`` (``values`` being a
    batch of it); None decides from ``values``. ``decimals``: ``coordinate_decimals`` of
    ``values``, when the caller has them.
    """
    declared = field.semantic in COORDINATE_SEMANTICS
    if decimals is None:
        decimals = coordinate_decimals(values)
    if declared:
        # A coordinate column without a declared precision is held to the default, never waved through.
        return decimals > allowed_decimals(field)
    if not _undeclared_float(values, field):
        return np.zeros(len(values), dtype=bool)
    numbers = values.to_numpy(dtype="float64", na_value=np.nan)
    fine = decimals > UNDECLARED_COORDINATE_DECIMALS
    if looks_like is None:
        looks_like = _shape(numbers, fine).looks_like
    return fine & ~np.isnan(numbers) if looks_like else np.zeros(len(values), dtype=bool)


def allowed_decimals(field: FieldSpec) -> int:
    """Decimals a field's coordinates may carry: its declared precision, else the default."""
    return UNDECLARED_COORDINATE_DECIMALS if field.precision is None else field.precision


def _text_detectors(field: FieldSpec) -> list[Detector]:
    detectors = list(DETECTORS.values())
    if field.semantic == "address":
        detectors = [
            ADDRESS_IN_ADDRESS_COLUMN if d.name == "street_address" else d for d in detectors
        ]
    if field.semantic not in COORDINATE_SEMANTICS:
        detectors.extend(coordinate_text_detectors(allowed_decimals(field)))
    return detectors


@lru_cache(maxsize=32)
def _any_of(patterns: tuple[str, ...]) -> str:
    return "|".join(f"(?:{p})" for p in patterns)


def _examples(detector: Detector, text: pa.Array, rows: np.ndarray) -> list[str]:
    shown = []
    for value in text.take(pa.array(rows[:MAX_EXAMPLES])).to_pylist():
        spans = detector.spans(value) if value is not None else []
        shown.append(mask(spans[0]) if spans else mask(str(value)))
    return shown


def text_hits(text: pa.Array, detectors: list[Detector]) -> list[Hits]:
    """Run text detectors over a column, touching each distinct value once.

    Columns repeat themselves (makes, streets, statuses), so the detectors run over the
    column's dictionary when it is at most half as long as the column. One combined
    pattern first finds the values any detector could match; each detector then runs
    over those candidates only.
    """
    if text.null_count == len(text):
        return []
    encoded = pc.dictionary_encode(text)
    distinct = encoded.dictionary
    use_dictionary = len(distinct) <= len(text) // 2
    target = distinct if use_dictionary else text
    maybe = np.asarray(
        pc.fill_null(
            pc.match_substring_regex(target, _any_of(tuple(d.pattern for d in detectors))), False
        ).to_numpy(zero_copy_only=False),
        dtype=bool,
    )
    if not maybe.any():
        return []
    where = np.flatnonzero(maybe)
    candidates = target.take(pa.array(where))
    if use_dictionary:
        # Row -> dictionary slot; null rows point at an extra slot that never fires.
        slots = np.asarray(
            pc.fill_null(encoded.indices, len(distinct)).to_numpy(zero_copy_only=False),
            dtype=np.int64,
        )
    hits: list[Hits] = []
    for detector in detectors:
        found = detector.find(candidates)
        if not found.any():
            continue
        in_target = np.zeros(len(target) + 1, dtype=bool)
        in_target[where[found]] = True
        rows = in_target[slots] if use_dictionary else in_target[:-1]
        hits.append(Hits(detector.name, rows, _examples(detector, text, np.flatnonzero(rows))))
    return hits


def scan_column(
    values: pd.Series,
    field: FieldSpec,
    looks_like: bool | None = None,
    decimals: np.ndarray | None = None,
) -> list[Hits]:
    """Every detector that fires on one column (``looks_like``, ``decimals``: see
    coordinate_hits)."""
    hits: list[Hits] = []
    dtype = values.dtype
    if field.semantic == "birth_date":
        return birth_date_hits(values)
    if pd.api.types.is_bool_dtype(dtype) or pd.api.types.is_datetime64_any_dtype(dtype):
        return hits
    if pd.api.types.is_float_dtype(dtype) or field.semantic in COORDINATE_SEMANTICS:
        found = coordinate_hits(values, field, looks_like, decimals)
        if found.any():
            shown = [mask(str(v)) for v in values.to_numpy()[np.flatnonzero(found)[:MAX_EXAMPLES]]]
            hits.append(Hits(COORDINATE, found, shown))
        if pd.api.types.is_float_dtype(dtype):
            return hits
    if pd.api.types.is_integer_dtype(dtype):
        # Integers lose a phone's or an SSN's separators, so those are read from the digits.
        return hits + integer_hits(values) + text_hits(as_text(values), [CARD])
    return hits + text_hits(as_text(values), _text_detectors(field))


def merge_hits(hits: list[Hits]) -> list[Hits]:
    """One Hits per detector name (a WKT point is also a coordinate pair: one finding),
    its examples still one per example row."""
    by_name: dict[str, list[Hits]] = {}
    for hit in hits:
        by_name.setdefault(hit.detector, []).append(hit)
    merged = []
    for name, group in by_name.items():
        if len(group) == 1:
            merged.append(group[0])
            continue
        shown: dict[int, str] = {}
        for hit in reversed(group):
            shown.update(
                zip(np.flatnonzero(hit.mask)[:MAX_EXAMPLES].tolist(), hit.examples, strict=True)
            )
        mask = np.logical_or.reduce([h.mask for h in group])
        rows = np.flatnonzero(mask)[:MAX_EXAMPLES].tolist()
        merged.append(Hits(name, mask, [shown.get(r, "") for r in rows]))
    return merged


def detector_rank(dtype: Any, field: FieldSpec) -> dict[str, int]:
    """The order ``scan`` reports one column's detectors in (what scan_column runs,
    first appearance kept by merge_hits): the registered text detectors in order, with
    coordinates first in a number or declared coordinate column and last elsewhere."""
    coordinates_first = pd.api.types.is_float_dtype(dtype) or field.semantic in COORDINATE_SEMANTICS
    names = [n for n in DETECTORS if n != COORDINATE]
    ordered = [COORDINATE, *names] if coordinates_first else [*names, COORDINATE]
    return {name: i for i, name in enumerate(ordered)}


def column_findings(dataset: str, column: str, hits: list[Hits], rows: np.ndarray) -> list[Finding]:
    """One Finding per detector name of one column's hits (``rows``: the row numbers)."""
    findings = []
    for hit in merge_hits(hits):
        where = np.flatnonzero(hit.mask)
        findings.append(
            Finding(
                dataset=dataset,
                column=column,
                detector=hit.detector,
                count=int(where.size),
                example_rows=[int(r) for r in rows[where[:MAX_EXAMPLES]]],
                examples=hit.examples,
            )
        )
    return findings


def scan(
    spec: DatasetSpec, frame: pd.DataFrame, decimals: dict[str, np.ndarray] | None = None
) -> list[Finding]:
    """Findings over the published frame (its index is the data row number).
    ``decimals``: per column, ``coordinate_decimals`` of a declared coordinate column's
    values, when the caller has them."""
    findings: list[Finding] = []
    rows = frame.index.to_numpy()
    for name in frame.columns:
        field = spec.field(str(name))
        # location_decimals of a coordinate column are its coordinate_decimals
        known = (
            decimals.get(str(name)) if decimals and field.semantic in COORDINATE_SEMANTICS else None
        )
        hits = scan_column(frame[name], field, decimals=known)
        findings.extend(column_findings(spec.id, str(name), hits, rows))
    return findings
