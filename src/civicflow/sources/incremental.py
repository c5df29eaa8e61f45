"""Incremental extracts: keep the rows above the stored watermark, and the next watermark.

A pulled kind (PostgreSQL) already filters at the source with ``since``; a file is read
whole and filtered here, so every kind gives the same rows. The watermark is the
cursor's largest published value as text: ISO 8601 for dates and datetimes, digits for
integers (what ``RemoteSource.pull`` receives as ``since``).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pyarrow as pa

from civicflow.sources.base import Extract, ExtractError
from civicflow.spec.models import DatasetSpec


def _cursor(spec: DatasetSpec) -> str:
    if spec.incremental is None:
        raise ValueError(f"dataset {spec.id} is not incremental")
    return spec.incremental.cursor


def _as_value(spec: DatasetSpec, text: str) -> int | pd.Timestamp:
    kind = str(spec.field(_cursor(spec)).type)
    try:
        return int(text) if kind == "integer" else pd.Timestamp(text)
    except ValueError:
        raise ExtractError(
            f"dataset {spec.id}: the stored watermark for incremental.cursor "
            f"{_cursor(spec)} is not a {kind}; run once with --full to reset it"
        ) from None


def newer_than(spec: DatasetSpec, ext: Extract, since: str) -> Extract:
    """``ext`` with only the rows whose cursor is above ``since`` (empty cursors kept:
    they cannot be placed, and the checks report them if the cursor is required).

    Row numbers (the frame's index) stay those of the source, so reports name the rows
    as the raw copy has them.
    """
    column = ext.frame[_cursor(spec)]
    keep = (column > _as_value(spec, since)).fillna(False).to_numpy(dtype=bool)
    keep = keep | column.isna().to_numpy()
    if keep.all():
        return ext
    positions = pa.array(np.flatnonzero(keep))
    return dataclasses.replace(ext, raw=ext.raw.take(positions), frame=ext.frame[keep])


def watermark_of(spec: DatasetSpec, frame: pd.DataFrame) -> str | None:
    """The cursor's largest value in ``frame`` as watermark text (None when empty)."""
    column = frame[_cursor(spec)].dropna()
    if column.empty:
        return None
    top = column.max()
    if str(spec.field(_cursor(spec)).type) == "integer":
        return str(int(top))
    return pd.Timestamp(top).isoformat()


def later(a: str | None, b: str | None, spec: DatasetSpec) -> str | None:
    """The larger of two watermarks (either may be None)."""
    if a is None or b is None:
        return a or b
    return a if _as_value(spec, a) >= _as_value(spec, b) else b
