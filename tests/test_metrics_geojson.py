"""The GeoJSON source: properties as text columns, centroids, WKT, and errors that name the row."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from civicflow.settings import Settings
from civicflow.sources import ExtractError, extract, get_source
from civicflow.sources.geojson import centroid, wkt
from civicflow.spec import find_dataset

PROJECT = Path(__file__).resolve().parents[1]
NC = PROJECT / "data" / "neighborhood_councils" / "la_neighborhood_councils_certified.geojson"


TRUNCATED = '{"type": "FeatureCollection", "features": ['


def _square(x0: float, y0: float, size: float) -> list[list[float]]:
    return [[x0, y0], [x0 + size, y0], [x0 + size, y0 + size], [x0, y0 + size], [x0, y0]]


def test_centroids_of_known_shapes() -> None:
    assert centroid({"type": "Polygon", "coordinates": [_square(0, 0, 2)]}) == pytest.approx(
        (1.0, 1.0)
    )
    # a hole in the left half pulls the centroid right: (4*1 - 1*0.5) / 3
    with_hole = {"type": "Polygon", "coordinates": [_square(0, 0, 2), _square(0, 0.5, 1)[::-1]]}
    assert centroid(with_hole) == pytest.approx((3.5 / 3, 1.0))
    # area-weighted over parts: a 2x2 square at 0 and a 1x1 square at 10
    multi = {"type": "MultiPolygon", "coordinates": [[_square(0, 0, 2)], [_square(10, 0, 1)]]}
    assert centroid(multi) == pytest.approx(((4 * 1 + 1 * 10.5) / 5, (4 * 1 + 1 * 0.5) / 5))
    assert centroid({"type": "Point", "coordinates": [-118.2, 34.1]}) == (-118.2, 34.1)
    assert (
        wkt({"type": "Polygon", "coordinates": [_square(0, 0, 1)]})
        == "POLYGON ((0.0 0.0, 1.0 0.0, 1.0 1.0, 0.0 1.0, 0.0 0.0))"
    )


def test_bundled_neighborhood_councils_extract(tmp_path: Path) -> None:
    settings = Settings(project_dir=PROJECT, var_dir=tmp_path / "var")
    spec = find_dataset(settings.datasets_dir, "neighborhood_councils")
    ext = extract(spec, settings, "run-1")
    frame = ext.frame
    features = json.loads(NC.read_text())["features"]
    assert len(frame) == len(features) == 99
    assert list(frame["nc_id"]) == [f["properties"]["NC_ID"] for f in features]
    assert list(frame["name"]) == [f["properties"]["NAME"] for f in features]
    assert (
        str(frame["certified_date"].iloc[0].date()) == features[0]["properties"]["CERTIFIED"][:10]
    )
    # every centroid inside the council's own bounding box, and inside Los Angeles
    for (_, row), feature in zip(frame.iterrows(), features, strict=True):
        geom = feature["geometry"]
        rings = (
            [geom["coordinates"][0]]
            if geom["type"] == "Polygon"
            else [p[0] for p in geom["coordinates"]]
        )
        xs = [pt[0] for ring in rings for pt in ring]
        ys = [pt[1] for ring in rings for pt in ring]
        assert min(xs) <= row["centroid_longitude"] <= max(xs)
        assert min(ys) <= row["centroid_latitude"] <= max(ys)
    assert (
        frame["centroid_latitude"].between(33.7, 34.35).all()
        and frame["centroid_longitude"].between(-118.67, -118.15).all()
    )
    # 311's nc codes all name a council here (the lookup the KPIs use)
    import pandas as pd

    la311 = pd.read_csv(
        PROJECT
        / "data"
        / "la311_service_requests"
        / "MyLA311_Service_Request_Data_2017_Subset.csv",
        usecols=["NC"],
    )
    assert set(la311["NC"].dropna().astype(int)) <= set(frame["nc_id"])


def _write(tmp_path: Path, doc: object | str) -> Path:
    path = tmp_path / "in.geojson"
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return path


def _read(path: Path, geometry: str = "centroid"):
    spec = find_dataset(PROJECT / "datasets", "neighborhood_councils")
    spec = spec.model_copy(update={"source": spec.source.model_copy(update={"geometry": geometry})})
    return get_source("geojson").read(spec, path)


def test_properties_become_text_columns_and_wkt(tmp_path: Path) -> None:
    doc = {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "properties": {"A": 1, "B": "x"},
                "geometry": {"type": "Point", "coordinates": [1.5, 2.5]},
            },
            {"type": "Feature", "properties": {"A": None, "C": True}, "geometry": None},
        ],
    }
    table = _read(_write(tmp_path, doc), "wkt")
    assert table.to_pydict() == {
        "A": ["1", None],
        "B": ["x", None],
        "C": [None, "true"],
        "geometry_wkt": ["POINT (1.5 2.5)", None],
    }
    assert _read(_write(tmp_path, doc), "drop").column_names == ["A", "B", "C"]


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ("", "file is empty"),
        (
            TRUNCATED,
            f"not valid JSON: Expecting value at line 1, column {len(TRUNCATED) + 1}",
        ),  # the end of the text
        ({"type": "Feature"}, "not a GeoJSON FeatureCollection"),
        ({"type": "FeatureCollection", "features": []}, "has no features"),
        (
            {
                "type": "FeatureCollection",
                "features": [
                    {"type": "Feature", "properties": {}, "geometry": None},
                    {"type": "Thing"},
                ],
            },
            "row 2 (feature 2) is not a GeoJSON Feature",
        ),
        (
            {
                "type": "FeatureCollection",
                "features": [
                    {
                        "type": "Feature",
                        "properties": {},
                        "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [1, 1]]]},
                    }
                ],
            },
            "row 1: bad geometry: a polygon ring needs at least 4 [x, y] positions",
        ),
        (
            {
                "type": "FeatureCollection",
                "features": [
                    {"type": "Feature", "properties": {"centroid_latitude": 1}, "geometry": None}
                ],
            },
            "clashes with the geometry column",
        ),
    ],
)
def test_bad_input_names_file_and_row(tmp_path: Path, doc: object, message: str) -> None:
    path = _write(tmp_path, doc)
    with pytest.raises(ExtractError) as info:
        _read(path)
    assert str(path) in str(info.value) and message in str(info.value)


def test_non_utf8_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "latin1.geojson"
    path.write_bytes(
        '{"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {"N": "Peña"}}]}'.encode(
            "latin-1"
        )
    )
    with pytest.raises(ExtractError, match="not valid UTF-8"):
        _read(path)
