"""GeoJSON FeatureCollections: feature properties become columns, geometry per the spec.

Like every source, values come out as text (typing is ``cast.py``'s job). Geometry is
published as the spec says (``source.geometry``):

- ``drop``: no geometry column;
- ``wkt``: one ``geometry_wkt`` column (OGC well-known text);
- ``centroid``: ``centroid_latitude`` and ``centroid_longitude`` columns, the
  area-weighted centroid of (multi)polygons, the mean vertex of points and lines.

Spec fields refer to these names (and to property names) in ``source:``. A feature
that is not a Feature, or a geometry that is malformed, is an ExtractError naming its
1-based row (feature number).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from civicflow.sources.base import ExtractError, register_source
from civicflow.spec.models import DatasetSpec, GeoJsonSource

WKT_COLUMN = "geometry_wkt"
LAT_COLUMN = "centroid_latitude"
LON_COLUMN = "centroid_longitude"


class GeometryError(ValueError):
    """A geometry whose coordinates do not have the shape its type needs.

    Its message names the geometry type (a known one) and the shape, never a coordinate
    or other value from the file: it reaches the public ledger reason.
    """


KNOWN_TYPES = ("Point", "MultiPoint", "LineString", "MultiLineString", "Polygon", "MultiPolygon")
UNSUPPORTED = f"geometry type is not supported (one of {', '.join(KNOWN_TYPES)})"


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def _ring(coords: Any) -> np.ndarray:
    ring = np.asarray(coords, dtype=float)
    if ring.ndim != 2 or ring.shape[1] < 2 or ring.shape[0] < 4:
        raise GeometryError("a polygon ring needs at least 4 [x, y] positions")
    return ring[:, :2]


def _ring_area_centroid(ring: np.ndarray) -> tuple[float, float, float]:
    """Signed area and centroid of a closed ring (shoelace formula, vectorised)."""
    x, y = ring[:, 0], ring[:, 1]
    x1, y1 = np.roll(x, -1), np.roll(y, -1)
    cross = x * y1 - x1 * y
    area = cross.sum() / 2.0
    if area == 0:
        return 0.0, float(x.mean()), float(y.mean())
    cx = ((x + x1) * cross).sum() / (6.0 * area)
    cy = ((y + y1) * cross).sum() / (6.0 * area)
    return float(area), float(cx), float(cy)


def _polygons(geometry: dict[str, Any]) -> list[Any]:
    kind = geometry.get("type")
    coords = geometry.get("coordinates")
    if not isinstance(coords, list) or not coords:
        raise GeometryError(f"{kind} has no coordinates")
    return [coords] if kind == "Polygon" else coords


def centroid(geometry: dict[str, Any]) -> tuple[float, float]:
    """(longitude, latitude) of the geometry's centroid."""
    kind = geometry.get("type")
    if kind in ("Polygon", "MultiPolygon"):
        total = sx = sy = 0.0
        for polygon in _polygons(geometry):
            for i, coords in enumerate(polygon):
                area, cx, cy = _ring_area_centroid(_ring(coords))
                # The exterior ring adds its area, holes subtract theirs, whatever their winding.
                weight = abs(area) if i == 0 else -abs(area)
                total += weight
                sx += weight * cx
                sy += weight * cy
        if total == 0:
            raise GeometryError(f"{kind} has zero area")
        return sx / total, sy / total
    coords = geometry.get("coordinates")
    if kind == "Point":
        arr = np.asarray(coords, dtype=float).reshape(1, -1)
    elif kind in ("MultiPoint", "LineString"):
        arr = np.asarray(coords, dtype=float)
    elif kind == "MultiLineString":
        arr = np.concatenate([np.asarray(line, dtype=float) for line in coords or []])
    else:
        raise GeometryError(UNSUPPORTED)
    if arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] < 2:
        raise GeometryError(f"{kind} coordinates are not [x, y] positions")
    return float(arr[:, 0].mean()), float(arr[:, 1].mean())


def _pos(p: Any) -> str:
    if not isinstance(p, list) or len(p) < 2:
        raise GeometryError("a position must be [x, y]")
    return f"{float(p[0])!r} {float(p[1])!r}"


def _seq(points: Any) -> str:
    if not isinstance(points, list) or not points:
        raise GeometryError("empty coordinate list")
    return "(" + ", ".join(_pos(p) for p in points) + ")"


def wkt(geometry: dict[str, Any]) -> str:
    kind = geometry.get("type")
    c = geometry.get("coordinates")
    if kind == "Point":
        return f"POINT ({_pos(c)})"
    if kind == "MultiPoint":
        return "MULTIPOINT (" + ", ".join(f"({_pos(p)})" for p in c or []) + ")"
    if kind == "LineString":
        return f"LINESTRING {_seq(c)}"
    if kind == "MultiLineString":
        return "MULTILINESTRING (" + ", ".join(_seq(line) for line in c or []) + ")"
    if kind == "Polygon":
        return "POLYGON (" + ", ".join(_seq(r) for r in c or []) + ")"
    if kind == "MultiPolygon":
        return (
            "MULTIPOLYGON ("
            + ", ".join("(" + ", ".join(_seq(r) for r in poly) + ")" for poly in c or [])
            + ")"
        )
    raise GeometryError(UNSUPPORTED)


def read_collection(path: Path) -> list[Any]:
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ExtractError(
            f"{path}: not valid UTF-8 (GeoJSON must be): byte 0x{exc.object[exc.start]:02x} at offset {exc.start}"
        ) from None
    if not text.strip():
        raise ExtractError(f"{path}: file is empty")
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ExtractError(
            f"{path}: not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}"
        ) from None
    if not isinstance(doc, dict) or doc.get("type") != "FeatureCollection":
        found = doc.get("type") if isinstance(doc, dict) else type(doc).__name__
        raise ExtractError(
            f"{path}: not a GeoJSON FeatureCollection (its top-level type is something else)",
            detail=f"top-level type: {found!r}",
        )
    features = doc.get("features")
    if not isinstance(features, list):
        raise ExtractError(f"{path}: FeatureCollection has no features list")
    if not features:
        raise ExtractError(f"{path}: FeatureCollection has no features (no data rows)")
    return features


@register_source("geojson")
class GeoJsonReader:
    suffix = ".geojson"

    def read(self, spec: DatasetSpec, raw_path: Path) -> pa.Table:
        source = spec.source
        assert isinstance(source, GeoJsonSource)
        features = read_collection(raw_path)
        columns: dict[str, list[str | None]] = {}
        geometry_cols = {"drop": [], "wkt": [WKT_COLUMN], "centroid": [LAT_COLUMN, LON_COLUMN]}[
            source.geometry
        ]
        derived: dict[str, list[str | None]] = {c: [] for c in geometry_cols}
        for row, feature in enumerate(features, start=1):
            if not isinstance(feature, dict) or feature.get("type") != "Feature":
                raise ExtractError(
                    f"{raw_path}: row {row} (feature {row}) is not a GeoJSON Feature"
                )
            props = feature.get("properties") or {}
            if not isinstance(props, dict):
                raise ExtractError(f"{raw_path}: row {row}: properties is not an object")
            for key in props:
                if key not in columns:
                    if key in derived:
                        raise ExtractError(
                            f"{raw_path}: property {key!r} clashes with the geometry column civicflow adds"
                        )
                    columns[key] = [None] * (row - 1)
            for key, values in columns.items():
                values.append(_text(props.get(key)))
            geometry = feature.get("geometry")
            if source.geometry == "drop":
                continue
            if geometry is None:
                for values in derived.values():
                    values.append(None)
                continue
            if not isinstance(geometry, dict):
                raise ExtractError(f"{raw_path}: row {row}: geometry is not an object")
            try:
                if source.geometry == "wkt":
                    derived[WKT_COLUMN].append(wkt(geometry))
                else:
                    lon, lat = centroid(geometry)
                    derived[LAT_COLUMN].append(repr(round(lat, 7)))
                    derived[LON_COLUMN].append(repr(round(lon, 7)))
            except GeometryError as exc:
                raise ExtractError(
                    f"{raw_path}: row {row}: bad geometry: {exc}",
                    detail=f"geometry type {geometry.get('type')!r}",
                ) from None
            except (TypeError, ValueError) as exc:
                # numpy's message quotes the value it could not convert: report only
                raise ExtractError(
                    f"{raw_path}: row {row}: bad geometry: coordinates are not numbers",
                    detail=str(exc),
                ) from None
        columns.update(derived)
        return pa.table(
            {name: pa.array(values, type=pa.string()) for name, values in columns.items()}
        )
