"""The ``/api/views/{id}.json`` document of a test dataset, shaped as the recorded one.

Keys and value types follow the view recorded from data.cityofnewyork.us
(tests/socrata/recorded/test_get_metadata_and_attachments.yaml); ``rowIdentifierColumnId``
and ``metadata.rowIdentifier`` hold the row identifier's column id, as recorded. A
column's ``cachedContents`` (column statistics) is computed from the rows at each request;
attachments are listed as recorded and served from ``/api/views/{id}/files/{assetId}``;
not modelled: a column's display ``width`` (absent on some recorded columns too), approvals
history. Creation follows sodapy 2.2.0's ``create`` (``POST /api/views.json``
with ``name``, ``columns`` and ``metadata.rowIdentifier`` as a field name).

Socrata's own pages for what is implemented here:

- The view document itself ("a View includes all of the metadata about a table or view,
  including descriptive values such as name, description, and tags, as well as structural
  data like the ViewColumns it contains"): Socrata's API type reference, served by its
  portals at ``/api/docs/types`` (e.g. http://explore.data.gov/api/docs/types); the recorded
  view decides the fields that reference does not list.
- ``dataTypeName`` values (``text``, ``number``, ``checkbox``, ``calendar_date``,
  ``point``, ``url``, ...): https://dev.socrata.com/docs/datatypes/.
- The row identifier, a publisher-specified column of unique values used in place of the
  internal ``:id`` (``rowIdentifierColumnId``; upserts match rows by it):
  https://dev.socrata.com/docs/row-identifiers.html and
  https://dev.socrata.com/publishers/soda-producer/soda-producer-basics ("Row Identifiers").
- ``publicationStage`` and ``grants``: a revision's changes stay staged until it is
  applied (https://dev.socrata.com/publishers/dsmapi); that a dataset created through a
  revision is private until then is this server's choice (see publishing.py), no page says.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from typing import Any

from tests.socrata.store import Dataset, Store

_USER = {
    "id": "test-user",
    "displayName": "Test publisher",
    "profileImageUrlLarge": "/api/users/test-user/profile_images/LARGE",
    "profileImageUrlMedium": "/api/users/test-user/profile_images/THUMB",
    "profileImageUrlSmall": "/api/users/test-user/profile_images/TINY",
    "screenName": "Test publisher",
    "type": "interactive",
    "flags": [],
}


def _cached_contents(values: list[Any], total: int) -> dict[str, Any]:
    """Column statistics as recorded: counts and extremes as strings, top 20 values."""
    texts = [v if isinstance(v, str) else json.dumps(v) for v in values]
    top = Counter(texts).most_common(20)
    stats: dict[str, Any] = {
        "non_null": str(len(texts)),
        "null": str(total - len(texts)),
        "top": [{"item": item, "count": str(count)} for item, count in top],
        "count": str(total),
        "cardinality": str(len(set(texts))),
    }
    if texts:
        stats["smallest"], stats["largest"] = min(texts), max(texts)
    return stats


def _columns(dataset: Dataset) -> list[dict[str, Any]]:
    records = list(dataset.records.values())
    return [
        {
            "id": c.id,
            "name": c.name or c.field_name,
            "dataTypeName": c.data_type,
            "description": c.description,
            "fieldName": c.field_name,
            "position": position,
            "renderTypeName": c.data_type,
            "tableColumnId": c.id,
            "cachedContents": _cached_contents(
                [r.values[c.field_name] for r in records if c.field_name in r.values], len(records)
            ),
            "format": {},
        }
        for position, c in enumerate(dataset.columns, start=1)
    ]


def view_document(dataset: Dataset) -> dict[str, Any]:
    now = int(time.time())
    row_id_column = dataset.column(dataset.row_identifier) if dataset.row_identifier else None
    view = dataset.view
    metadata: dict[str, Any] = {
        "rdfSubject": "0",
        "rdfClass": "",
        "attachments": [
            {"filename": name, "assetId": asset_id, "name": name}
            for asset_id, (name, _) in dataset.attachments.items()
        ],
        "custom_fields": {},
        "availableDisplayTypes": ["table", "fatrow", "page"],
        **view.get("metadata", {}),
    }
    if row_id_column is not None:
        metadata["rowIdentifier"] = row_id_column.id
    document: dict[str, Any] = {
        "id": dataset.id,
        "name": dataset.name,
        "assetType": "dataset",
        "attribution": "",
        "averageRating": 0,
        "category": "",
        "createdAt": view.get("createdAt", now),
        "description": "",
        "diciBackend": False,
        "displayType": "table",
        "downloadCount": 0,
        "hideFromCatalog": False,
        "hideFromDataJson": False,
        "locale": "en_US",
        "locked": False,
        "newBackend": True,
        "numberOfComments": 0,
        "oid": 1,
        "provenance": "official",
        "publicationAppendEnabled": True,
        "publicationDate": now,
        "publicationGroup": 1,
        "publicationStage": "published" if dataset.published else "unpublished",
        "rowClass": "",
        "rowsUpdatedAt": dataset.rows_updated_at,
        "rowsUpdatedBy": _USER["id"],
        "tableId": 1,
        "totalTimesRated": 0,
        "viewCount": 0,
        "viewLastModified": now,
        "viewType": "tabular",
        "approvals": [],
        "clientContext": {"clientContextVariables": [], "inheritedVariables": {}},
        "columns": _columns(dataset),
        "grants": [{"inherited": False, "type": "viewer", "flags": ["public"]}]
        if dataset.public
        else [],
        "owner": _USER,
        "query": {},
        "rights": ["read", "write", "add", "delete"],
        "tableAuthor": _USER,
        "tags": [],
        "flags": ["default"],
    }
    document.update({k: v for k, v in view.items() if k not in ("metadata", "createdAt")})
    document["metadata"] = metadata
    if row_id_column is not None:
        document["rowIdentifierColumnId"] = row_id_column.id
    return document


def create_from_view_request(store: Store, body: Any) -> Dataset:
    """A new, unpublished dataset from sodapy's ``create`` payload."""
    if not isinstance(body, dict) or not body.get("name"):
        raise ValueError("a JSON object with a name is required")
    columns = [(str(c["fieldName"]), str(c["dataTypeName"])) for c in body.get("columns", [])]
    metadata = dict(body.get("metadata") or {})
    row_identifier = metadata.pop("rowIdentifier", None)
    extra = {k: v for k, v in body.items() if k not in ("name", "columns", "metadata")}
    dataset = store.create(
        columns,
        name=str(body["name"]),
        row_identifier=row_identifier,
        view={**extra, "metadata": metadata},
        published=False,
    )
    for column, spec in zip(dataset.columns, body.get("columns", []), strict=True):
        column.name = str(spec.get("name", column.field_name))
        column.description = str(spec.get("description", ""))
    return dataset
