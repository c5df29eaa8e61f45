"""Cross-column consistency: a dataset is only as private as the finest location it publishes.

Generalising an address to the hundred block protects no one if a house-number column or
coordinates to 10 decimals are published beside it. Every location a column gives is
expressed as the decimals of a degree it pins a point to (a hundred block is about
100 m, 3 decimals; an exact house number is finer than any coordinate this scan allows).
When a dataset generalises any location, the coarsest such generalisation is the
dataset's target and every published location column finer than it is a
``finer_location`` finding, row by row (a ``pii_allow`` with a reason can let it through).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from civicflow.privacy.detectors import ADDRESS_IN_ADDRESS_COLUMN, FINER_LOCATION, as_text, mask
from civicflow.privacy.hits import Hits
from civicflow.privacy.report import MAX_EXAMPLES
from civicflow.privacy.scan import COORDINATE_SEMANTICS, coordinate_decimals
from civicflow.spec.models import DatasetSpec, FieldSpec

#: a hundred block is about 100 m: 3 decimals of a degree of latitude (111 m)
BLOCK_DECIMALS = 3
#: an exact house number pins one building: finer than anything generalised
EXACT_DECIMALS = 6
#: a column named like a house number is read as one even if the spec forgot its semantic
HOUSE_NUMBER_NAME = re.compile(r"(?:house|street|building|address)_?(?:number|num|no|nbr)")


@dataclass(frozen=True)
class Level:
    """The finest location one column publishes."""

    column: str
    decimals: int  # equivalent decimals of a degree; -1 when the column is empty
    address: bool  # an address or house-number column (else coordinates)

    def describe(self) -> str:
        if self.address:
            kind = "exact house numbers" if self.decimals >= EXACT_DECIMALS else "hundred blocks"
            return f"{self.column}: {kind}" if self.decimals >= 0 else f"{self.column}: no values"
        if self.decimals < 0:
            return f"{self.column}: no values"
        return f"{self.column}: {self.decimals} decimals (about {_metres(self.decimals)})"


def _metres(decimals: int) -> str:
    size = 111_000 / 10**decimals
    if size < 1:
        return "1 m or less"
    return f"{size / 1000:,.0f} km" if size >= 1000 else f"{size:,.0f} m"


def generalised_decimals(field: FieldSpec) -> int | None:
    """The precision a field's generalise rule publishes a location at, if it is one."""
    rule = field.privacy
    if rule is None or rule.rule != "generalise":
        return None
    if rule.method == "hundred_block":
        return BLOCK_DECIMALS
    if field.semantic in COORDINATE_SEMANTICS and rule.method == "round":
        return int(rule.decimals or 0)
    if field.semantic in COORDINATE_SEMANTICS and rule.method == "grid":
        return max(0, math.ceil(-math.log10(float(rule.grid_size or 1))))
    return None


def row_decimals(values: pd.Series, field: FieldSpec) -> np.ndarray | None:
    """Per row, the decimals of the location the value gives (None: not a location column)."""
    if field.semantic in COORDINATE_SEMANTICS:
        return coordinate_decimals(values)
    if field.semantic != "address" and not HOUSE_NUMBER_NAME.fullmatch(field.name):
        return None
    present = values.notna().to_numpy(dtype=bool)
    if pd.api.types.is_numeric_dtype(values.dtype):
        # A house-number column: exact unless already a multiple of 100.
        numbers = values.to_numpy(dtype="float64", na_value=np.nan)
        exact = present & (np.nan_to_num(numbers) % 100 != 0)
    else:
        exact = ADDRESS_IN_ADDRESS_COLUMN.find(as_text(values))
    levels = np.where(exact, EXACT_DECIMALS, BLOCK_DECIMALS)
    return np.where(present, levels, -1)


def location_decimals(spec: DatasetSpec, frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """Per published location column, ``row_decimals`` of its values: computed once per
    frame, since the consistency findings and the finest locations both read them."""
    found = {}
    for name in frame.columns:
        decimals = row_decimals(frame[name], spec.field(str(name)))
        if decimals is not None:
            found[str(name)] = decimals
    return found


def finest_locations(
    spec: DatasetSpec, frame: pd.DataFrame, decimals: dict[str, np.ndarray] | None = None
) -> list[Level]:
    """Every published location column with the finest location it gives, finest first
    (``decimals``: ``location_decimals`` of the frame, when the caller has them)."""
    found = location_decimals(spec, frame) if decimals is None else decimals
    levels = []
    for name, column in found.items():
        field = spec.field(name)
        is_address = field.semantic == "address" or bool(HOUSE_NUMBER_NAME.fullmatch(field.name))
        levels.append(Level(name, int(column.max(initial=-1)), is_address))
    return sorted(levels, key=lambda lv: -lv.decimals)


def target_decimals(spec: DatasetSpec) -> int | None:
    """The coarsest location the dataset generalises to (None when it generalises none)."""
    found = [d for f in spec.published_fields() if (d := generalised_decimals(f)) is not None]
    return min(found) if found else None


def consistency_hits(
    spec: DatasetSpec, frame: pd.DataFrame, decimals: dict[str, np.ndarray] | None = None
) -> dict[str, Hits]:
    """Per column, the rows that publish a location finer than the dataset's target
    (``decimals``: ``location_decimals`` of the frame, when the caller has them)."""
    target = target_decimals(spec)
    if target is None:
        return {}
    found = location_decimals(spec, frame) if decimals is None else decimals
    hits = {}
    for name, column in found.items():
        finer = column > target
        if finer.any():
            shown = [
                mask(str(v)) for v in frame[name].to_numpy()[np.flatnonzero(finer)[:MAX_EXAMPLES]]
            ]
            hits[name] = Hits(FINER_LOCATION, finer, shown)
    return hits
