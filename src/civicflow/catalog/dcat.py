"""Standard metadata: the DCAT-US 1.1 catalog at ``/data.json`` and DCAT as JSON-LD.

``/data.json``  the Project Open Data (DCAT-US 1.1) catalog of every live dataset, what
    national aggregators (data.gov) harvest. Each dataset carries every required field
    and the applicable ones: title, description, keyword (the tags), modified (when the
    live version was published), publisher (the department), contactPoint (the steward,
    with a ``mailto:``), identifier, accessLevel, license (as a URL), accrualPeriodicity
    (ISO 8601 from the update frequency), issued, landingPage (the dataset page), theme,
    temporal (from the record date field), describedBy (the Data Package with the Table
    Schema) and a ``distribution`` per download format. ``bureauCode`` and
    ``programCode`` are federal (OMB) codes and do not apply to a city: omitted.
``/-/dcat/<table>.jsonld``  one dataset as JSON-LD: the same fields, with an inline
    ``@context`` mapping them to the W3C DCAT, Dublin Core, FOAF and vCard terms.

Everything comes from the catalog entries (the metadata each publish wrote from the
spec, and the version history): nothing is typed here a second time. URLs are absolute,
on the host the request came to.
"""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
from typing import Any

from datasette.resources import TableResource
from datasette.utils import escape_sqlite
from datasette.utils.asgi import Response

from civicflow.catalog import downloads, entries

CONFORMS_TO = "https://project-open-data.cio.gov/v1.1/schema"
CONTEXT = "https://project-open-data.cio.gov/v1.1/schema/catalog.jsonld"
DESCRIBED_BY = "https://project-open-data.cio.gov/v1.1/schema/catalog.json"
#: update_frequency (spec) -> accrualPeriodicity (ISO 8601 repeating duration)
ACCRUAL_PERIODICITY = {
    "daily": "R/P1D",
    "weekly": "R/P1W",
    "monthly": "R/P1M",
    "quarterly": "R/P3M",
    "annually": "R/P1Y",
    "irregular": "irregular",
}
#: how each download is described as a distribution
FORMAT_NAMES = {
    "csv": ("CSV", "Comma-separated values with a header row"),
    "json": ("JSON", "JSON array of objects"),
    "geojson": ("GeoJSON", "GeoJSON FeatureCollection of points"),
    "parquet": ("Parquet", "Apache Parquet"),
    "datapackage": ("Data Package", "Frictionless Data Package: the CSV with its Table Schema"),
}
ISO_MOMENT = re.compile(
    r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?)?$"
)
#: JSON-LD context of a dataset: DCAT-US keys as W3C DCAT / Dublin Core / FOAF / vCard terms
JSONLD_CONTEXT: dict[str, Any] = {
    "dcat": "http://www.w3.org/ns/dcat#",
    "dct": "http://purl.org/dc/terms/",
    "foaf": "http://xmlns.com/foaf/0.1/",
    "vcard": "http://www.w3.org/2006/vcard/ns#",
    "org": "http://www.w3.org/ns/org#",
    "pod": "https://project-open-data.cio.gov/v1.1/schema#",
    "xsd": "http://www.w3.org/2001/XMLSchema#",
    "title": "dct:title",
    "description": "dct:description",
    "keyword": "dcat:keyword",
    "modified": {"@id": "dct:modified", "@type": "xsd:dateTime"},
    "issued": {"@id": "dct:issued", "@type": "xsd:dateTime"},
    "publisher": "dct:publisher",
    "name": "foaf:name",
    "contactPoint": "dcat:contactPoint",
    "fn": "vcard:fn",
    "hasEmail": {"@id": "vcard:hasEmail", "@type": "@id"},
    "identifier": "dct:identifier",
    "accessLevel": "pod:accessLevel",
    "rights": "dct:rights",
    "license": {"@id": "dct:license", "@type": "@id"},
    "accrualPeriodicity": "dct:accrualPeriodicity",
    "landingPage": {"@id": "dcat:landingPage", "@type": "@id"},
    "theme": "dcat:theme",
    "temporal": "dct:temporal",
    "wdrs": "http://www.w3.org/2007/05/powder-s#",
    "describedBy": {"@id": "wdrs:describedby", "@type": "@id"},
    "conformsTo": {"@id": "dct:conformsTo", "@type": "@id"},
    "describedByType": "pod:describedByType",
    "distribution": "dcat:distribution",
    "downloadURL": {"@id": "dcat:downloadURL", "@type": "@id"},
    "accessURL": {"@id": "dcat:accessURL", "@type": "@id"},
    "mediaType": "dcat:mediaType",
    "format": "dct:format",
}


def accrual_periodicity(frequency: str | None) -> str | None:
    """ISO 8601 repeating duration of an update frequency (None: static or unknown)."""
    return ACCRUAL_PERIODICITY.get(str(frequency).lower()) if frequency else None


def keywords(entry: entries.Entry) -> list[str]:
    """The tags (DCAT-US needs at least one: else the category, else the title)."""
    tags = [str(t) for t in entry.get("tags", []) if str(t).strip()]
    if not tags and entry.get("category"):
        tags = [str(entry.get("category"))]
    return tags or [entry.title]


def dataset_page(base: str, table: str) -> str:
    return f"{base}/datasets/{table}"


def distributions(entry: entries.Entry, base: str, database: str | None) -> list[dict[str, Any]]:
    """One distribution per download format, and the Datasette table (API) when known."""
    out: list[dict[str, Any]] = []
    for kind in downloads.formats_of(entry):
        name, what = FORMAT_NAMES[kind]
        dist: dict[str, Any] = {
            "@type": "dcat:Distribution",
            "title": f"{entry.title} ({name})",
            "description": f"{what}: every row of the live version.",
            "downloadURL": base + downloads.download_path(entry.table, kind),
            "mediaType": downloads.FORMATS[kind][0],
            "format": name,
        }
        if kind == "datapackage":
            dist["conformsTo"] = "https://specs.frictionlessdata.io/data-package/"
        elif kind == "csv":
            dist["describedBy"] = base + downloads.download_path(entry.table, "datapackage")
            dist["describedByType"] = "application/json"
        out.append(dist)
    if database:
        out.append(
            {
                "@type": "dcat:Distribution",
                "title": f"{entry.title} (API)",
                "description": "Datasette table view: filter, facet, and JSON API.",
                "accessURL": f"{base}/{database}/{entry.table}",
                "format": "API",
            }
        )
    return out


def dataset(
    entry: entries.Entry,
    base: str,
    *,
    database: str | None = None,
    temporal: str | None = None,
) -> dict[str, Any]:
    """The DCAT-US 1.1 dataset object of one catalog entry."""
    access = str(entry.get("access_level", "public"))
    out: dict[str, Any] = {
        "@type": "dcat:Dataset",
        "title": entry.title,
        "description": entry.description or entry.title,
        "keyword": keywords(entry),
        "modified": entry.last_updated,
        "issued": entry.versions[-1].published_at,
        "publisher": {"@type": "org:Organization", "name": entry.department or entry.title},
        "contactPoint": contact_point(entry),
        "identifier": entry.table,
        "accessLevel": access,
        "landingPage": dataset_page(base, entry.table),
        "describedBy": base + downloads.download_path(entry.table, "datapackage"),
        "describedByType": "application/json",
        "distribution": distributions(entry, base, database),
    }
    url = entries.license_url(entry.license)
    if url:
        out["license"] = url
    if access != "public":
        review = entry.get("privacy_review") or {}
        out["rights"] = str(review.get("notes") or f"Access level: {access}.")
    periodicity = accrual_periodicity(entry.get("update_frequency"))
    if periodicity:
        out["accrualPeriodicity"] = periodicity
    if entry.get("category"):
        out["theme"] = [str(entry.get("category"))]
    if temporal:
        out["temporal"] = temporal
    return out


def contact_point(entry: entries.Entry) -> dict[str, Any]:
    contact: dict[str, Any] = {
        "@type": "vcard:Contact",
        "fn": str(entry.get("steward") or entry.department or entry.title),
    }
    email = entry.get("steward_email")
    if email:
        contact["hasEmail"] = f"mailto:{email}"
    return contact


def temporal_of(conn: sqlite3.Connection, entry: entries.Entry) -> str | None:
    """start/end of the record date field (ISO 8601 interval), or None."""
    field = entry.get("record_date")
    if not field:
        return None
    columns = {str(r[1]) for r in conn.execute("select * from pragma_table_info(?)", [entry.table])}
    if field not in columns:
        return None
    column = escape_sqlite(str(field))
    row = conn.execute(
        f"select min({column}), max({column}) from {escape_sqlite(entry.table)}"
        f" where {column} is not null and {column} != ''"
    ).fetchone()
    if row is None or row[0] is None:
        return None
    start, end = str(row[0]).replace(" ", "T"), str(row[1]).replace(" ", "T")
    if ISO_MOMENT.match(start) and ISO_MOMENT.match(end):
        return f"{start}/{end}"
    return None


def _read(path: str, table: str | None) -> list[tuple[entries.Entry, str | None]]:
    """Entries (all, or the one ``table``) with their temporal range, from one snapshot."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
    try:
        conn.execute("begin")
        if table is None:
            found = entries.read_entries(conn)
        else:
            one = entries.read_entry(conn, table)
            found = [one] if one is not None else []
        return [(e, temporal_of(conn, e)) for e in found]
    finally:
        conn.close()


async def _visible(datasette: Any, request: Any, database: str, table: str) -> bool:
    resource = TableResource(database=database, table=table)
    return bool(
        await datasette.allowed(action="view-table", resource=resource, actor=request.actor)
    )


def catalog(datasets: list[dict[str, Any]], base: str) -> dict[str, Any]:
    return {
        "@context": CONTEXT,
        "@id": f"{base}/data.json",
        "@type": "dcat:Catalog",
        "conformsTo": CONFORMS_TO,
        "describedBy": DESCRIBED_BY,
        "dataset": datasets,
    }


async def data_json(datasette: Any, request: Any) -> Response:
    db = downloads.portal_database(datasette)
    base = downloads.base_url(request)
    datasets = []
    if db is not None:
        found = await asyncio.to_thread(_read, str(db.path), None)
        for entry, temporal in found:
            if await _visible(datasette, request, db.name, entry.table):
                datasets.append(dataset(entry, base, database=db.name, temporal=temporal))
    return Response.json(catalog(datasets, base))


async def dataset_jsonld(datasette: Any, request: Any) -> Response:
    table = request.url_vars["table"]
    db = downloads.portal_database(datasette)
    found = []
    if db is not None and not table.startswith("_"):
        found = await asyncio.to_thread(_read, str(db.path), table)
    if db is None or not found or not await _visible(datasette, request, db.name, table):
        return Response.error([f"{table}: no such dataset (only published tables)"], 404)
    entry, temporal = found[0]
    base = downloads.base_url(request)
    body = {
        "@context": JSONLD_CONTEXT,
        "@id": dataset_page(base, table),
        **dataset(entry, base, database=db.name, temporal=temporal),
    }
    for dist in body["distribution"]:
        dist["@id"] = dist.get("downloadURL") or dist.get("accessURL")
    return Response(
        json.dumps(body, indent=2),
        content_type="application/ld+json; charset=utf-8",
    )


ROUTES: list[tuple[str, Any]] = [
    (r"^/data\.json$", data_json),
    (r"^/-/dcat/(?P<table>[^/]+)\.jsonld$", dataset_jsonld),
]
