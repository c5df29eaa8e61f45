"""Generalisers for the ``generalise`` rule: coarsen a value so it no longer points at one
person or home. One vectorised function per method, registered by name; nulls stay null.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from civicflow.privacy.detectors import (
    as_text,
    on_distinct,
    shield_numbered_streets,
    text_number_parts,
    unshield_numbered_streets,
)
from civicflow.privacy.errors import PrivacyError
from civicflow.spec.models import FieldSpec, PrivacyRule

Generaliser = Callable[[pd.Series, PrivacyRule], pd.Series]
GENERALISERS: dict[str, Generaliser] = {}
#: the field types each method accepts (checked before any work)
ACCEPTS: dict[str, tuple[str, ...]] = {}


def register_generaliser(
    method: str, accepts: tuple[str, ...]
) -> Callable[[Generaliser], Generaliser]:
    def decorate(fn: Generaliser) -> Generaliser:
        GENERALISERS[method] = fn
        ACCEPTS[method] = accepts
        return fn

    return decorate


def _string_series(arr: pa.Array, index: pd.Index, name: object) -> pd.Series:
    return pd.Series(arr.to_numpy(zero_copy_only=False), index=index, name=name, dtype="str")


# A house number: a whole number followed by a street word, which may start with digits
# ("8330 3RD ST W") or be a prefix-type name ("VIA MARINA", "AVENUE 50"). Between them may
# come a direction letter glued to the number ("2209E MICHIGAN AVE", as LADOT writes some
# locations) or a fraction ("1234 1/2 MAIN", "1808-1/2 W 25TH ST"). The number starts a
# word, follows no "/" (the 2 of 1/2 is not a house number), or is glued to the "at front"
# qualifier ("AF4421 ORCHARD AVE"). Ranges ("1234-1236 MAIN ST") keep their shape with both
# ends generalised. The rewrite strings are RE2's (\1 is group 1, so \100 is group 1 then "00").
_BEFORE = r"(^|[^\w/]|\bA/?F)"
_TAIL = r"((?:[NSEW]|-\d/\d)?\s+(?:\d/\d\s+)?[A-Za-z0-9]*[A-Za-z])"
_RANGE = _BEFORE + r"(\d*)\d\d(\s*-\s*)(\d*)\d\d" + _TAIL
_SHORT_RANGE = _BEFORE + r"\d{1,2}\s*-\s*\d{1,2}" + _TAIL
_LONG = _BEFORE + r"(\d+)\d\d" + _TAIL
_SHORT = _BEFORE + r"\d{1,2}" + _TAIL


def hundred_block_text(values: pa.Array) -> pa.Array:
    """``2111 W BELLEVUE AVE, 90026`` → ``2100 W BELLEVUE AVE, 90026``; 1-99 → ``0``."""
    out = pc.replace_substring_regex(shield_numbered_streets(values), _RANGE, r"\1\200\3\400\5")
    # Ranges with 1-2 digit ends ("12-14 MAIN ST") fall back to the block of the first number.
    out = pc.replace_substring_regex(out, _SHORT_RANGE, r"\10\2")
    out = pc.replace_substring_regex(out, _LONG, r"\1\200\3")
    return unshield_numbered_streets(pc.replace_substring_regex(out, _SHORT, r"\10\2"))


@register_generaliser("hundred_block", ("string",))
def hundred_block(values: pd.Series, rule: PrivacyRule) -> pd.Series:
    text = on_distinct(as_text(values), hundred_block_text)
    return _string_series(text, values.index, values.name)


def _decimals_of(step: float) -> int:
    exponent = Decimal(repr(step)).normalize().as_tuple().exponent
    return max(0, -int(exponent))


def _floats(text: pa.Array) -> np.ndarray:
    return np.asarray(pc.cast(text, pa.float64()).to_numpy(zero_copy_only=False), dtype="float64")


def _shortest_text(numbers: np.ndarray) -> pa.Array:
    """Floats as their shortest exact decimal text (34.07, not 34.070000000000000284)."""
    return pc.cast(pa.array(numbers, from_pandas=True), pa.string())


def _on_coordinates(values: pd.Series, fn: Callable[[np.ndarray], np.ndarray]) -> pd.Series:
    """Apply ``fn`` to a number column, or to both halves of a ``(lat, lon)`` geopoint column."""
    if pd.api.types.is_numeric_dtype(values.dtype):
        out = fn(values.to_numpy(dtype="float64", na_value=np.nan))
        return pd.Series(out, index=values.index, name=values.name)
    text = on_distinct(as_text(values), lambda distinct: _on_pairs(distinct, fn))
    return _string_series(text, values.index, values.name)


def _on_pairs(text: pa.Array, fn: Callable[[np.ndarray], np.ndarray]) -> pa.Array:
    first, second = text_number_parts(text)
    pair = second.is_valid()  # a geopoint has both halves; anything else becomes empty
    lat = _shortest_text(fn(_floats(pc.if_else(pair, first, None))))
    lon = _shortest_text(fn(_floats(second)))
    return pc.binary_join_element_wise("(", lat, ", ", lon, ")", "")  # last argument: the separator


@register_generaliser("round", ("number", "geopoint"))
def round_coordinates(values: pd.Series, rule: PrivacyRule) -> pd.Series:
    decimals = int(rule.decimals or 0)
    return _on_coordinates(values, lambda a: np.round(a, decimals))


@register_generaliser("grid", ("number", "geopoint"))
def snap_to_grid(values: pd.Series, rule: PrivacyRule) -> pd.Series:
    size = float(rule.grid_size or 0)
    decimals = _decimals_of(size)
    # Round after snapping so 0.1 * 3 is published as 0.3, not 0.30000000000000004.
    return _on_coordinates(values, lambda a: np.round(np.round(a / size) * size, decimals))


_TRUNCATE_UNITS = {"day": "D", "hour": "h"}


@register_generaliser("truncate", ("date", "datetime"))
def truncate_timestamps(values: pd.Series, rule: PrivacyRule) -> pd.Series:
    ts = pd.to_datetime(values)
    if rule.truncate_to == "month":
        return (ts - pd.to_timedelta(ts.dt.day - 1, unit="D")).dt.floor("D")
    if rule.truncate_to == "year":
        return (ts - pd.to_timedelta(ts.dt.day_of_year - 1, unit="D")).dt.floor("D")
    return ts.dt.floor(_TRUNCATE_UNITS[str(rule.truncate_to)])


def negative(values: pd.Series) -> np.ndarray:
    """Rows holding a negative number (an age below zero is bad input, not a band)."""
    return (pd.to_numeric(values) < 0).fillna(False).to_numpy(dtype=bool)


#: per method, the rows whose value the method cannot generalise (reported, published empty)
INVALID: dict[str, Callable[[pd.Series], np.ndarray]] = {"age_band": negative}


@register_generaliser("age_band", ("integer", "number"))
def age_band(values: pd.Series, rule: PrivacyRule) -> pd.Series:
    """``37`` → ``30-39`` (band width 10). The published column is text; negative ages
    are published empty (and reported as invalid by protect), never as ``-10--1``."""
    width = int(rule.band_width or 1)
    ages = values.astype("Float64")
    ages = ages.where(ages >= 0)
    low = (ages // width * width).astype("Int64")
    high = low + (width - 1)
    labels = low.astype("str") + "-" + high.astype("str")
    return labels.where(ages.notna(), None).astype("str")


@register_generaliser("zip5", ("string", "integer"))
def zip5(values: pd.Series, rule: PrivacyRule) -> pd.Series:
    """ZIP+4 (``90026-1234``, ``900261234``) → ``90026``; other values unchanged."""
    arr = pc.replace_substring_regex(as_text(values), r"^\s*(\d{5})(?:-?\d{4})?\s*$", r"\1")
    return _string_series(arr, values.index, values.name)


def generalise(values: pd.Series, field: FieldSpec, rule: PrivacyRule) -> pd.Series:
    try:
        fn = GENERALISERS[str(rule.method)]
    except KeyError:
        raise PrivacyError(
            f"field {field.name}: no generalise method {rule.method!r} (registered: {', '.join(sorted(GENERALISERS))})"
        ) from None
    return fn(values, rule)
