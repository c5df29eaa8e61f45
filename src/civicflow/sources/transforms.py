"""Column transforms a spec declares, applied after casting and before validation.

One function per transform kind, registered by name. ``reproject`` turns projected
coordinates (e.g. California State Plane zone V, US survey feet) into WGS84 degrees with
pyproj, vectorised over whole columns; sentinel values such as 99999 become null.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd

from civicflow.spec.models import DatasetSpec, ReprojectTransform

Transform = Callable[[Any, pd.DataFrame], pd.DataFrame]
TRANSFORMS: dict[str, Transform] = {}


class TransformError(ValueError):
    """A declared transform cannot run (unknown CRS, non-numeric column, unknown kind)."""


def register_transform(kind: str) -> Callable[[Transform], Transform]:
    def decorate(fn: Transform) -> Transform:
        TRANSFORMS[kind] = fn
        return fn

    return decorate


@lru_cache(maxsize=16)
def _to_wgs84(source_crs: str) -> Any:
    from pyproj import Transformer
    from pyproj.exceptions import CRSError

    try:
        # always_xy: input (easting, northing), output (longitude, latitude), whatever the CRS axis order.
        return Transformer.from_crs(source_crs, "EPSG:4326", always_xy=True)
    except CRSError as exc:
        raise TransformError(f"reproject: unknown source_crs {source_crs!r}: {exc}") from exc


@register_transform("reproject")
def reproject(transform: ReprojectTransform, frame: pd.DataFrame) -> pd.DataFrame:
    """Replace ``x_field`` with longitude and ``y_field`` with latitude (degrees, WGS84)."""
    for name in (transform.x_field, transform.y_field):
        if not pd.api.types.is_numeric_dtype(frame[name].dtype):
            raise TransformError(
                f"reproject: field {name} must be a number field, not {frame[name].dtype}"
            )
    x = frame[transform.x_field].to_numpy(dtype="float64", na_value=np.nan)
    y = frame[transform.y_field].to_numpy(dtype="float64", na_value=np.nan)
    missing = np.isnan(x) | np.isnan(y)
    if transform.missing_values:
        sentinels = np.asarray(transform.missing_values, dtype="float64")
        missing |= np.isin(x, sentinels) | np.isin(y, sentinels)
    lon = np.full(len(frame), np.nan)
    lat = np.full(len(frame), np.nan)
    keep = ~missing
    if keep.any():
        lon[keep], lat[keep] = _to_wgs84(transform.source_crs).transform(x[keep], y[keep])
    out = frame.copy()
    out[transform.x_field] = lon
    out[transform.y_field] = lat
    return out


def apply_transforms(spec: DatasetSpec, frame: pd.DataFrame) -> pd.DataFrame:
    """Every transform of the spec, in order. The input frame is left unchanged."""
    for transform in spec.transforms:
        try:
            fn = TRANSFORMS[transform.kind]
        except KeyError:
            raise TransformError(
                f"dataset {spec.id}: no transform kind {transform.kind!r} (registered: {', '.join(sorted(TRANSFORMS))})"
            ) from None
        frame = fn(transform, frame)
    return frame
