"""Every download format of every bundled dataset, over HTTP from a real Datasette portal,
read back by readers that did not write it (pandas and pyarrow, json, frictionless)."""

from __future__ import annotations

import io
import json
import secrets
from collections.abc import Iterator
from pathlib import Path

import frictionless
import httpx
import pandas as pd
import pyarrow.parquet as pq
import pytest

from civicflow.pipeline import run_dataset
from civicflow.settings import Settings, load_settings
from civicflow.spec import find_dataset
from tests.fixtures.portal import DatasetteServer

PROJECT = Path(__file__).resolve().parents[1]
#: the bundled datasets the catalog tests publish (file sources: no database needed)
BUNDLED = (
    "la311_service_requests",
    "parking_citations",
    "lax_passenger_traffic",
    "lax_passenger_workbook",
    "neighborhood_councils",
    "code_enforcement_cases",
)
#: datasets whose dictionary has coordinates (lat/lon fields or a geopoint)
WITH_COORDINATES = ("la311_service_requests", "parking_citations", "neighborhood_councils")
WITHOUT_COORDINATES = ("lax_passenger_traffic", "lax_passenger_workbook")


def publish_bundled(
    server: DatasetteServer, var_dir: Path
) -> Iterator[tuple[Settings, dict[str, str]]]:
    """Publish the bundled datasets through the real pipeline; yields the settings and
    each dataset's outcome."""
    with pytest.MonkeyPatch.context() as mp:
        for key, value in server.env.items():
            mp.setenv(key, value)
        mp.setenv("CIVICFLOW_PROJECT_DIR", str(PROJECT))
        mp.setenv("CIVICFLOW_VAR_DIR", str(var_dir))
        mp.setenv("CIVICFLOW_HASH_KEY", secrets.token_hex(32))  # parking_citations hashes VINs
        settings = load_settings()
        outcomes: dict[str, str] = {}
        for table in BUNDLED:
            outcome = run_dataset(settings, table)
            assert outcome.ok, f"{table}: {outcome.outcome}: {outcome.reason}"
            outcomes[table] = outcome.outcome
        yield settings, outcomes


@pytest.fixture(scope="module")
def portal(datasette_server, tmp_path_factory) -> Iterator[DatasetteServer]:
    for _ in publish_bundled(datasette_server, tmp_path_factory.mktemp("catalog") / "var"):
        yield datasette_server


def spec_columns(table: str) -> list[str]:
    """The published fields in the spec's order, read from the spec itself."""
    spec = find_dataset(PROJECT / "datasets", table)
    return [f.name for f in spec.published_fields()]


def get(portal: DatasetteServer, path: str, **params: str) -> httpx.Response:
    return httpx.get(f"{portal.url}{path}", params=params, timeout=120)


@pytest.mark.parametrize("table", BUNDLED)
def test_csv_reads_back_with_every_row_in_spec_order(portal, table) -> None:
    response = get(portal, f"/-/download/{table}.csv")
    assert response.status_code == 200, response.text[:300]
    assert response.headers["content-type"].startswith("text/csv")
    assert f'filename="{table}.csv"' in response.headers["content-disposition"]
    assert not response.content.startswith(b"\xef\xbb\xbf")
    frame = pd.read_csv(io.BytesIO(response.content), dtype=str, keep_default_na=False)
    assert list(frame.columns) == spec_columns(table)
    assert len(frame) == portal.row_count(table) > 0
    # the same values as the portal's own JSON API, for the first rows by key order
    first = portal.query(f"select * from {table} limit 1")[0]
    assert set(first) == set(frame.columns)


def test_csv_bom_option_for_spreadsheets(portal) -> None:
    table = "la311_service_requests"
    plain = get(portal, f"/-/download/{table}.csv").content
    with_bom = get(portal, f"/-/download/{table}.csv", bom="1").content
    assert with_bom.startswith(b"\xef\xbb\xbf") and with_bom[3:] == plain
    # utf-8-sig (what Excel reads) strips it: the header is the plain one
    frame = pd.read_csv(io.BytesIO(with_bom), encoding="utf-8-sig", dtype=str)
    assert list(frame.columns) == spec_columns(table)


@pytest.mark.parametrize("table", BUNDLED)
def test_json_is_an_array_of_objects_with_every_row(portal, table) -> None:
    response = get(portal, f"/-/download/{table}.json")
    assert response.status_code == 200
    assert f'filename="{table}.json"' in response.headers["content-disposition"]
    rows = json.loads(response.content)
    assert isinstance(rows, list) and len(rows) == portal.row_count(table)
    columns = spec_columns(table)
    assert all(list(r) == columns for r in rows)
    # values agree with what Datasette's own API serves for the same row
    sample = rows[len(rows) // 2]
    keys = find_dataset(PROJECT / "datasets", table).primary_key
    where = " and ".join(f"{k} = {json.dumps(sample[k]).replace(chr(34), chr(39))}" for k in keys)
    assert portal.query(f"select * from {table} where {where}") == [sample]


@pytest.mark.parametrize("table", BUNDLED)
def test_parquet_reads_back_with_pyarrow_and_pandas(portal, table) -> None:
    response = get(portal, f"/-/download/{table}.parquet")
    assert response.status_code == 200
    assert f'filename="{table}.parquet"' in response.headers["content-disposition"]
    parquet = pq.ParquetFile(io.BytesIO(response.content))
    assert parquet.schema_arrow.names == spec_columns(table)
    assert parquet.metadata.num_rows == portal.row_count(table)
    frame = pd.read_parquet(io.BytesIO(response.content))
    assert list(frame.columns) == spec_columns(table)
    assert len(frame) == portal.row_count(table)
    # integer fields stay integers
    spec = find_dataset(PROJECT / "datasets", table)
    for f in spec.published_fields():
        if f.type == "integer":
            assert str(parquet.schema_arrow.field(f.name).type) == "int64", f.name


@pytest.mark.parametrize("table", WITH_COORDINATES)
def test_geojson_is_a_feature_collection_of_points(portal, table) -> None:
    response = get(portal, f"/-/download/{table}.geojson")
    assert response.status_code == 200, response.text[:300]
    assert response.headers["content-type"].startswith("application/geo+json")
    collection = json.loads(response.content)
    assert collection["type"] == "FeatureCollection"
    features = collection["features"]
    assert len(features) == portal.row_count(table)
    points = [f["geometry"] for f in features if f["geometry"] is not None]
    assert len(points) > len(features) / 2  # most rows have coordinates
    columns = spec_columns(table)
    for feature in features:
        assert feature["type"] == "Feature"
        assert list(feature["properties"]) == columns
    for point in points:
        assert point["type"] == "Point"
        lon, lat = point["coordinates"]
        assert -180 <= lon <= 180 and -90 <= lat <= 90
    # Los Angeles: the points are where the city is (lon/lat, not swapped)
    lons = sorted(p["coordinates"][0] for p in points)
    lats = sorted(p["coordinates"][1] for p in points)
    assert -119.0 < lons[len(lons) // 2] < -117.5 and 33.5 < lats[len(lats) // 2] < 34.6


@pytest.mark.parametrize("table", WITHOUT_COORDINATES)
def test_geojson_of_a_table_without_coordinates_is_404(portal, table) -> None:
    response = get(portal, f"/-/download/{table}.geojson")
    assert response.status_code == 404
    assert "no coordinates or geometry" in response.text
    assert f"/-/download/{table}.csv" in response.text


@pytest.mark.parametrize("table", BUNDLED)
def test_data_package_validates_with_frictionless(portal, table) -> None:
    response = get(portal, f"/-/download/{table}/datapackage.json")
    assert response.status_code == 200
    descriptor = response.json()
    resource = descriptor["resources"][0]
    assert resource["path"] == f"{portal.url}/-/download/{table}.csv"
    assert [f["name"] for f in resource["schema"]["fields"]] == spec_columns(table)
    spec = find_dataset(PROJECT / "datasets", table)
    assert descriptor["title"] == spec.title
    # frictionless reads the package and the CSV it points to, over HTTP
    report = frictionless.validate(descriptor)
    assert report.valid, report.flatten(["rowNumber", "fieldName", "type", "note"])[:10]
    assert report.tasks[0].stats["rows"] == portal.row_count(table)


@pytest.mark.parametrize(
    "path",
    [
        "/-/download/_civicflow_versions.csv",
        "/-/download/_civicflow_metadata.json",
        "/-/download/_civicflow_versions.parquet",
        "/-/download/_civicflow_versions/datapackage.json",
        "/-/download/no_such_table.csv",
        "/-/download/no_such_table/datapackage.json",
    ],
)
def test_private_and_unknown_tables_are_refused(portal, path) -> None:
    response = get(portal, path)
    assert response.status_code == 404
    assert "no such dataset" in response.text


def test_a_table_without_a_published_version_is_refused(portal) -> None:
    # the portal's staging lease registry is a real table, but not a dataset
    assert "_civicflow_staging" in portal.tables()
    response = get(portal, "/-/download/_civicflow_staging.csv")
    assert response.status_code == 404
