"""Scan checks that read numbers and dates rather than text patterns.

- Integer columns lose a phone's or an SSN's separators (``2135550134``, ``123456789``),
  so those are recognised from the digits, vectorised with numpy: a phone is 10 digits
  (or 11 starting with 1) with a valid area code and exchange (both 200-999); an SSN is
  9 digits with a valid area (100-899, not 666), group and serial. SSNs whose area starts
  with 0 lost that digit as integers and are not found (8 digits are too common in counts).
- A column declared ``semantic: birth_date`` may be published to the year only (the
  HIPAA Safe Harbor rule): any value that is not 1 January at midnight is a finding, so
  a spec must ``generalise`` it with ``truncate_to: year`` (or drop it).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from civicflow.privacy.detectors import BIRTH_DATE, mask
from civicflow.privacy.hits import Hits
from civicflow.privacy.report import MAX_EXAMPLES


def _phone_shaped(v: np.ndarray) -> np.ndarray:
    national = np.where((v >= 12_000_000_000) & (v < 20_000_000_000), v - 10_000_000_000, v)
    exchange = (national // 10_000) % 1000
    return (national >= 2_000_000_000) & (national <= 9_999_999_999) & (exchange >= 200)


def _ssn_shaped(v: np.ndarray) -> np.ndarray:
    area, group, serial = v // 1_000_000, (v // 10_000) % 100, v % 10_000
    return (v >= 100_000_000) & (v <= 899_999_999) & (area != 666) & (group != 0) & (serial != 0)


def _hits(name: str, found: np.ndarray, values: pd.Series) -> list[Hits]:
    if not found.any():
        return []
    shown = [mask(str(x)) for x in values.to_numpy()[np.flatnonzero(found)[:MAX_EXAMPLES]]]
    return [Hits(name, found, shown)]


def integer_hits(values: pd.Series) -> list[Hits]:
    """Phone- and SSN-shaped values of an integer column."""
    digits = values.astype("Int64").to_numpy(dtype="int64", na_value=-1)
    if digits.size == 0 or digits.max() < 100_000_000:  # counts, codes, times: nothing 9+ digits
        return []
    return _hits("phone", _phone_shaped(digits), values) + _hits("ssn", _ssn_shaped(digits), values)


def birth_date_hits(values: pd.Series) -> list[Hits]:
    """Rows of a birth-date column published finer than the year."""
    if pd.api.types.is_numeric_dtype(values.dtype):
        # A bare year (1985) is the year; anything longer (19850517) is a full date.
        numbers = values.to_numpy(dtype="float64", na_value=np.nan)
        return _hits(BIRTH_DATE, ~np.isnan(numbers) & (np.abs(numbers) > 9999), values)
    present = values.notna()
    ts = (
        values
        if pd.api.types.is_datetime64_any_dtype(values.dtype)
        else pd.to_datetime(values.astype("str").where(present), errors="coerce", format="mixed")
    )
    year_start = (ts.dt.month == 1) & (ts.dt.day == 1) & (ts == ts.dt.floor("D"))
    # A value that cannot be read as a date is still a date someone typed: it counts.
    found = (present & ~year_start.fillna(False)).to_numpy(dtype=bool)
    return _hits(BIRTH_DATE, found, values)
