"""DCAT-US 1.1 ``/data.json`` and per-dataset JSON-LD from a real Datasette portal with the
bundled datasets published, validated against the official JSON Schema (tests/dcat_us_1_1,
resolved locally, no network)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

from civicflow.catalog import dcat
from civicflow.spec import find_dataset
from civicflow.spec.models import UpdateFrequency
from tests.fixtures.portal import DatasetteServer
from tests.test_catalog_downloads import BUNDLED, WITH_COORDINATES, publish_bundled

PROJECT = Path(__file__).resolve().parents[1]
SCHEMAS = Path(__file__).resolve().parent / "dcat_us_1_1"
#: DCAT-US 1.1 marks these required for federal agencies only (OMB codes): a city has none
FEDERAL_ONLY = {"bureauCode", "programCode"}
#: what the spec's update frequency must become (ISO 8601 repeating durations)
PERIODICITY = {
    "daily": "R/P1D",
    "weekly": "R/P1W",
    "monthly": "R/P1M",
    "quarterly": "R/P3M",
    "annually": "R/P1Y",
    "irregular": "irregular",
}


@pytest.fixture(scope="module")
def portal(datasette_server, tmp_path_factory) -> Iterator[DatasetteServer]:
    for _ in publish_bundled(datasette_server, tmp_path_factory.mktemp("dcat") / "var"):
        yield datasette_server


@pytest.fixture(scope="module")
def catalog(portal) -> dict[str, Any]:
    response = httpx.get(f"{portal.url}/data.json", timeout=60)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = response.json()
    return body


def schema(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((SCHEMAS / name).read_text())
    return loaded


def validator(name: str) -> jsonschema.Draft4Validator:
    """The official schema ``name`` with its relative $refs resolved from tests/dcat_us_1_1."""
    resources = []
    for path in sorted(SCHEMAS.glob("*.json")):
        contents = json.loads(path.read_text())
        uri = contents["id"].rstrip("#")
        resources.append((uri, Resource.from_contents(contents, default_specification=DRAFT4)))
    registry: Registry[Any] = Registry().with_resources(resources)
    return jsonschema.Draft4Validator(
        schema(name), registry=registry, format_checker=jsonschema.Draft4Validator.FORMAT_CHECKER
    )


def schema_errors(document: dict[str, Any], name: str) -> list[str]:
    """Every violation of the official schema, except the two federal-only required fields
    (each must be its own "is a required property" error, nothing else)."""
    out = []
    for error in validator(name).iter_errors(document):
        federal = error.validator == "required" and any(
            f"'{f}' is a required property" == error.message for f in FEDERAL_ONLY
        )
        if not federal:
            out.append(f"{list(error.absolute_path)}: {error.message}")
    return out


def bundled(catalog: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found = {d["identifier"]: d for d in catalog["dataset"]}
    assert set(BUNDLED) <= set(found), sorted(found)
    return {t: found[t] for t in BUNDLED}


def live_published_at(portal: DatasetteServer, table: str) -> str:
    rows = portal.query(
        "select published_at from _civicflow_versions"
        f" where table_name = '{table}' order by id desc limit 1"
    )
    return str(rows[0]["published_at"])


def test_the_schema_resolves_its_references_locally_and_rejects_bad_catalogs() -> None:
    # a dataset missing required fields and with a bad accessLevel fails, by the schema
    bad = {"conformsTo": dcat.CONFORMS_TO, "dataset": [{"title": "x", "accessLevel": "open"}]}
    messages = schema_errors(bad, "catalog.json")
    assert any("'description' is a required property" in m for m in messages)
    assert any("'open' is not one of" in m for m in messages)


def test_data_json_validates_against_dcat_us_1_1(portal, catalog) -> None:
    datasets = bundled(catalog)
    only_bundled = {**catalog, "dataset": list(datasets.values())}
    assert schema_errors(only_bundled, "catalog.json") == []
    for table, entry in datasets.items():
        assert schema_errors(entry, "dataset.json") == [], table
        assert not FEDERAL_ONLY & set(entry), "federal codes do not apply to a city"
    assert catalog["conformsTo"] == "https://project-open-data.cio.gov/v1.1/schema"
    assert catalog["@id"] == f"{portal.url}/data.json"


@pytest.mark.parametrize("table", BUNDLED)
def test_dataset_fields_come_from_the_spec_and_the_live_version(portal, catalog, table) -> None:
    entry = bundled(catalog)[table]
    spec = find_dataset(PROJECT / "datasets", table)
    assert entry["title"] == spec.title
    assert entry["description"] == spec.description
    assert entry["modified"] == live_published_at(portal, table)
    assert entry["accrualPeriodicity"] == PERIODICITY[str(spec.update_frequency)]
    assert entry["accessLevel"] == spec.access_level
    assert entry["keyword"] == list(spec.tags) and len(entry["keyword"]) >= 1
    assert entry["publisher"] == {"@type": "org:Organization", "name": spec.department}
    assert entry["contactPoint"] == {
        "@type": "vcard:Contact",
        "fn": spec.steward.name,
        "hasEmail": f"mailto:{spec.steward.email}",
    }
    assert spec.license == "CC0-1.0"
    assert entry["license"] == "https://creativecommons.org/publicdomain/zero/1.0/"
    assert entry["landingPage"] == f"{portal.url}/datasets/{table}"
    assert entry["theme"] == [spec.category]


@pytest.mark.parametrize("frequency", list(UpdateFrequency))
def test_every_update_frequency_has_an_iso_8601_periodicity_or_none(frequency) -> None:
    value = dcat.accrual_periodicity(str(frequency))
    assert value == PERIODICITY.get(str(frequency))
    if value is None:  # static: never updated, so no periodicity applies
        assert str(frequency) == "static"


@pytest.mark.parametrize("table", BUNDLED)
def test_a_distribution_per_format_and_every_download_url_resolves(portal, catalog, table) -> None:
    distributions = bundled(catalog)[table]["distribution"]
    downloads = [d for d in distributions if "downloadURL" in d]
    formats = sorted(d["format"] for d in downloads)
    expected = ["CSV", "Data Package", "JSON", "Parquet"]
    if table in WITH_COORDINATES:
        expected = sorted([*expected, "GeoJSON"])
    assert formats == expected
    for dist in downloads:
        assert dist["downloadURL"].startswith(f"{portal.url}/-/download/{table}")
        response = httpx.get(dist["downloadURL"], timeout=120)
        assert response.status_code == 200, dist["downloadURL"]
        assert response.headers["content-type"].startswith(dist["mediaType"])
        assert len(response.content) > 100
    api = [d for d in distributions if "accessURL" in d]
    assert len(api) == 1 and httpx.get(api[0]["accessURL"], timeout=60).status_code == 200


def test_urls_are_absolute_on_the_host_the_request_came_to(portal) -> None:
    response = httpx.get(
        f"{portal.url}/data.json", headers={"Host": "data.lacity.example:8001"}, timeout=60
    )
    assert response.status_code == 200
    body = response.json()
    assert body["@id"] == "http://data.lacity.example:8001/data.json"
    entry = next(d for d in body["dataset"] if d["identifier"] == "lax_passenger_traffic")
    assert entry["landingPage"] == "http://data.lacity.example:8001/datasets/lax_passenger_traffic"
    urls = [d.get("downloadURL") or d["accessURL"] for d in entry["distribution"]]
    assert urls and all(u.startswith("http://data.lacity.example:8001/") for u in urls)


@pytest.mark.parametrize("table", BUNDLED)
def test_json_ld_per_dataset_is_dcat_with_the_same_fields(portal, catalog, table) -> None:
    response = httpx.get(f"{portal.url}/-/dcat/{table}.jsonld", timeout=60)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/ld+json")
    doc = response.json()
    context = doc.pop("@context")
    assert context["dcat"] == "http://www.w3.org/ns/dcat#"
    assert context["dct"] == "http://purl.org/dc/terms/"
    assert doc.pop("@id") == f"{portal.url}/datasets/{table}"
    assert doc["@type"] == "dcat:Dataset"
    for dist in doc["distribution"]:
        assert dist.pop("@id") == (dist.get("downloadURL") or dist.get("accessURL"))
    assert doc == bundled(catalog)[table]
    # every key used is a term of the context (so it expands to a DCAT/DCT/vCard IRI)
    used = set(doc) | {k for d in doc["distribution"] for k in d}
    used |= set(doc["contactPoint"]) | set(doc["publisher"])
    assert {k for k in used if not k.startswith("@")} <= set(context)


@pytest.mark.parametrize("table", ["_civicflow_versions", "no_such_table"])
def test_json_ld_of_private_or_unknown_tables_is_404(portal, table) -> None:
    response = httpx.get(f"{portal.url}/-/dcat/{table}.jsonld", timeout=60)
    assert response.status_code == 404
    identifiers = {d["identifier"] for d in httpx.get(f"{portal.url}/data.json").json()["dataset"]}
    assert table not in identifiers
