"""Full downloads of every live dataset, streamed: CSV, JSON, GeoJSON, Parquet, Data Package.

Routes (read-only, anyone who may view the table):

``/-/download/<table>.csv[?bom=1]``  CSV with a header row (``bom=1``: a UTF-8 byte order
    mark first, so spreadsheet programs read accents right).
``/-/download/<table>.json``  one JSON array of objects.
``/-/download/<table>.geojson``  a FeatureCollection of Points, only where the data
    dictionary has coordinates (latitude and longitude fields, a ``geopoint`` or a
    ``geometry`` field); 404 otherwise.
``/-/download/<table>.parquet``  Parquet, one row group per chunk read.
``/-/download/<table>/datapackage.json``  a Frictionless Data Package whose one resource
    is the CSV download, with its Table Schema (types from the data dictionary).

Every file has the columns in the data dictionary's (the spec's) order and every row of
the live version: the table is read in chunks of ``CHUNK_ROWS`` on a read-only
connection inside one read transaction (one snapshot even while a publish swaps in the
next version; the portal is in WAL mode, so a download never holds up a publish), each
chunk encoded off the event loop and sent before the next is read. Only tables with a
live version are served; staging and bookkeeping tables (names starting with ``_``) and
unknown names get 404.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import json
import math
import re
import sqlite3
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
from datasette.resources import TableResource
from datasette.utils import escape_sqlite
from datasette.utils.asgi import Response

from civicflow.catalog import entries
from civicflow.portals import publish_store as store

#: rows read, encoded and sent at a time (bounds the memory of one download)
CHUNK_ROWS = 20_000
BOM = b"\xef\xbb\xbf"
#: format -> (media type, file extension); also what DCAT lists as distributions
FORMATS: dict[str, tuple[str, str]] = {
    "csv": ("text/csv", "csv"),
    "json": ("application/json", "json"),
    "geojson": ("application/geo+json", "geojson"),
    "parquet": ("application/vnd.apache.parquet", "parquet"),
    "datapackage": ("application/json", "datapackage.json"),
}
ARROW_TYPES = {"INTEGER": pa.int64(), "REAL": pa.float64()}
#: data dictionary type -> Table Schema type (a geopoint is published as "lat, lon" text,
#: not one of Table Schema's geopoint formats, so the package declares it a string)
TABLE_SCHEMA_TYPES = {
    "string": "string",
    "integer": "integer",
    "number": "number",
    "boolean": "boolean",
    "date": "date",
    "datetime": "datetime",
}
LATITUDE = re.compile(r"^(?:.*_)?(?:latitude|lat)$")
LONGITUDE = re.compile(r"^(?:.*_)?(?:longitude|lon|lng|long)$")
GEOPOINT = re.compile(r"^\s*\(?\s*(-?\d+(?:\.\d*)?)\s*,\s*(-?\d+(?:\.\d*)?)\s*\)?\s*$")


# -- what a download reads ---------------------------------------------------------------


@dataclass(frozen=True)
class Geometry:
    """Where a row's point comes from: latitude and longitude fields, or one field holding
    a geopoint ("lat, lon") or GeoJSON geometry text."""

    latitude: str | None = None
    longitude: str | None = None
    point: str | None = None
    geometry: str | None = None


def column_order(entry: entries.Entry, table_columns: list[str]) -> list[str]:
    """The dictionary's order, for the columns the table has (then any others it has)."""
    present = set(table_columns)
    ordered = [str(f["name"]) for f in entry.dictionary if f.get("name") in present]
    return ordered + [c for c in table_columns if c not in ordered]


def geometry_of(entry: entries.Entry) -> Geometry | None:
    """The fields a GeoJSON download places its points by, or None (no coordinates)."""
    fields = entry.dictionary
    lat = next((f["name"] for f in fields if _is_coordinate(f, "latitude", LATITUDE)), None)
    lon = next((f["name"] for f in fields if _is_coordinate(f, "longitude", LONGITUDE)), None)
    if lat and lon:
        return Geometry(latitude=str(lat), longitude=str(lon))
    point = next((f["name"] for f in fields if f.get("type") == "geopoint"), None)
    if point:
        return Geometry(point=str(point))
    shape = next((f["name"] for f in fields if f.get("type") in ("geometry", "geojson")), None)
    return Geometry(geometry=str(shape)) if shape else None


def _is_coordinate(field: dict[str, Any], semantic: str, pattern: re.Pattern[str]) -> bool:
    if field.get("semantic") == semantic:
        return True
    return field.get("type") == "number" and bool(pattern.match(str(field.get("name", ""))))


def has_geometry(entry: entries.Entry) -> bool:
    return geometry_of(entry) is not None


def formats_of(entry: entries.Entry) -> list[str]:
    """The download formats this dataset offers (GeoJSON only with coordinates)."""
    return [f for f in FORMATS if f != "geojson" or has_geometry(entry)]


def download_path(table: str, kind: str) -> str:
    """The path of one download (``kind`` a key of ``FORMATS``)."""
    if kind == "datapackage":
        return f"/-/download/{table}/datapackage.json"
    return f"/-/download/{table}.{FORMATS[kind][1]}"


def base_url(request: Any) -> str:
    """Scheme and host the request came to (absolute URLs in packages and DCAT)."""
    scheme = request.scheme or "http"
    host = request.host or "localhost"
    return f"{scheme}://{host}"


class Snapshot:
    """One live table read on a read-only connection, inside one read transaction."""

    def __init__(self, path: str, table: str) -> None:
        self.conn = sqlite3.connect(
            f"file:{path}?mode=ro", uri=True, check_same_thread=False, isolation_level=None
        )
        self.conn.execute("begin")
        self.table = table
        self.entry: entries.Entry | None = None
        self.columns: list[tuple[str, str]] = []
        try:
            self.entry = entries.read_entry(self.conn, table)
            if self.entry is not None:
                declared = {
                    str(r[1]): str(r[2]).upper()
                    for r in self.conn.execute(
                        "select * from pragma_table_info(?)", [table]
                    ).fetchall()
                }
                names = column_order(self.entry, list(declared))
                self.columns = [(n, declared[n]) for n in names]
        except BaseException:
            self.close()
            raise

    @property
    def names(self) -> list[str]:
        return [n for n, _ in self.columns]

    def chunks(self) -> Iterator[list[tuple[Any, ...]]]:
        names = ", ".join(escape_sqlite(n) for n in self.names)
        cursor = self.conn.execute(f"select {names} from {escape_sqlite(self.table)}")
        while batch := cursor.fetchmany(CHUNK_ROWS):
            yield batch

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self.conn.execute("rollback")
        self.conn.close()


# -- encoders: chunks of rows -> bytes ---------------------------------------------------


class Encoder:
    """Turns chunks of rows into bytes; ``start`` before the first, ``end`` after the last."""

    def __init__(self, snapshot: Snapshot) -> None:
        self.names = snapshot.names
        self.columns = snapshot.columns

    def start(self) -> bytes:
        return b""

    def chunk(self, rows: list[tuple[Any, ...]]) -> bytes:
        raise NotImplementedError

    def end(self) -> bytes:
        return b""

    def schema(self) -> pa.Schema:
        return pa.schema([pa.field(n, ARROW_TYPES.get(t, pa.string())) for n, t in self.columns])

    def batch(self, rows: list[tuple[Any, ...]], schema: pa.Schema) -> pa.RecordBatch:
        values = list(zip(*rows, strict=True))
        arrays = [_array(v, f.type) for v, f in zip(values, schema, strict=True)]
        return pa.record_batch(arrays, schema=schema)


def _array(values: tuple[Any, ...], kind: pa.DataType) -> pa.Array:
    try:
        return pa.array(values, type=kind)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        # SQLite lets a value of another type into a column (civicflow's loads never do):
        # keep it, as text, rather than lose it.
        if pa.types.is_string(kind):
            return pa.array([None if v is None else str(v) for v in values], type=kind)
        raise


class CsvEncoder(Encoder):
    def __init__(self, snapshot: Snapshot, *, bom: bool) -> None:
        super().__init__(snapshot)
        self.bom = bom
        self.arrow = self.schema()

    def start(self) -> bytes:
        out = io.StringIO()
        csv.writer(out, lineterminator="\n").writerow(self.names)
        return (BOM if self.bom else b"") + out.getvalue().encode()

    def chunk(self, rows: list[tuple[Any, ...]]) -> bytes:
        sink = pa.BufferOutputStream()
        options = pa_csv.WriteOptions(include_header=False, quoting_style="needed")
        pa_csv.write_csv(self.batch(rows, self.arrow), sink, options)
        return bytes(sink.getvalue().to_pybytes())


class JsonEncoder(Encoder):
    """One JSON array of objects, written object by object."""

    first = True

    def start(self) -> bytes:
        return b"["

    def chunk(self, rows: list[tuple[Any, ...]]) -> bytes:
        names = self.names
        text = json.dumps([dict(zip(names, r, strict=True)) for r in rows], ensure_ascii=False)
        body = text[1:-1]
        if not self.first:
            body = "," + body
        self.first = False
        return body.encode()

    def end(self) -> bytes:
        return b"]\n"


class GeoJsonEncoder(Encoder):
    """A FeatureCollection: one Feature per row (geometry null when it has no point)."""

    first = True

    def __init__(self, snapshot: Snapshot, geometry: Geometry) -> None:
        super().__init__(snapshot)
        self.geometry = geometry
        self.index = {n: i for i, n in enumerate(self.names)}

    def start(self) -> bytes:
        return b'{"type":"FeatureCollection","features":['

    def chunk(self, rows: list[tuple[Any, ...]]) -> bytes:
        names = self.names
        features = [
            {
                "type": "Feature",
                "geometry": self.shape(row),
                "properties": dict(zip(names, row, strict=True)),
            }
            for row in rows
        ]
        body = json.dumps(features, ensure_ascii=False)[1:-1]
        if not self.first:
            body = "," + body
        self.first = False
        return body.encode()

    def shape(self, row: tuple[Any, ...]) -> dict[str, Any] | None:
        g = self.geometry
        if g.latitude and g.longitude:
            return _point(row[self.index[g.latitude]], row[self.index[g.longitude]])
        if g.point:
            match = GEOPOINT.match(str(row[self.index[g.point]] or ""))
            return _point(match[1], match[2]) if match else None
        value = row[self.index[str(g.geometry)]]
        try:
            shape = json.loads(value) if isinstance(value, str) else None
        except ValueError:
            return None
        return shape if isinstance(shape, dict) and "type" in shape else None

    def end(self) -> bytes:
        return b"]}\n"


def _point(lat: Any, lon: Any) -> dict[str, Any] | None:
    try:
        y, x = float(lat), float(lon)
    except (TypeError, ValueError):
        return None
    if not (math.isfinite(x) and math.isfinite(y) and -90 <= y <= 90 and -180 <= x <= 180):
        return None
    return {"type": "Point", "coordinates": [x, y]}


class _Sink:
    """A write-only file for ParquetWriter whose bytes are taken after each row group."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.position = 0
        self.closed = False

    def write(self, data: Any) -> int:
        data = bytes(data)
        self.parts.append(data)
        self.position += len(data)
        return len(data)

    def tell(self) -> int:
        return self.position

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def readable(self) -> bool:
        return False

    def take(self) -> bytes:
        out = b"".join(self.parts)
        self.parts = []
        return out


class ParquetEncoder(Encoder):
    """Parquet with one row group per chunk; the footer comes with ``end``."""

    def __init__(self, snapshot: Snapshot) -> None:
        super().__init__(snapshot)
        self.arrow = self.schema()
        self.sink = _Sink()
        self.writer = pq.ParquetWriter(self.sink, self.arrow, compression="snappy")

    def chunk(self, rows: list[tuple[Any, ...]]) -> bytes:
        self.writer.write_batch(self.batch(rows, self.arrow), row_group_size=len(rows))
        return self.sink.take()

    def end(self) -> bytes:
        self.writer.close()
        return self.sink.take()


# -- the ASGI side -----------------------------------------------------------------------


class StreamingResponse:
    """A response whose body is sent part by part as ``parts`` yields it."""

    def __init__(
        self,
        parts: Callable[[], Awaitable[bytes | None]],
        *,
        content_type: str,
        headers: dict[str, str],
        close: Callable[[], Awaitable[None]],
    ) -> None:
        self.parts = parts
        self.content_type = content_type
        self.headers = headers
        self.close = close

    async def asgi_send(self, send: Callable[[dict[str, Any]], Awaitable[None]]) -> None:
        headers = [[b"content-type", self.content_type.encode()]]
        headers += [[k.lower().encode(), v.encode()] for k, v in self.headers.items()]
        try:
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            while (part := await self.parts()) is not None:
                if part:
                    await send({"type": "http.response.body", "body": part, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        finally:
            await self.close()


def portal_database(datasette: Any) -> Any | None:
    """The portal's database (the one file-backed database Datasette serves)."""
    for name, db in datasette.databases.items():
        if not name.startswith("_") and getattr(db, "path", None):
            return db
    return None


async def open_snapshot(datasette: Any, request: Any, table: str) -> Snapshot | Response:
    """The live table's snapshot, or the error response (404 unknown or private, 403)."""
    if table.startswith("_") or store.is_private(table) or not store.TABLE_NAME.match(table):
        return Response.error([f"{table}: no such dataset (only published tables)"], 404)
    db = portal_database(datasette)
    if db is None:
        return Response.error(["The portal has no database"], 404)
    resource = TableResource(database=db.name, table=table)
    if not await datasette.allowed(action="view-table", resource=resource, actor=request.actor):
        return Response.error(["Permission denied"], 403)
    snapshot = await asyncio.to_thread(Snapshot, str(db.path), table)
    if snapshot.entry is None or not snapshot.columns:
        await asyncio.to_thread(snapshot.close)
        return Response.error([f"{table}: no such dataset (it has no published version)"], 404)
    return snapshot


def stream(snapshot: Snapshot, encoder: Encoder, kind: str, filename: str) -> StreamingResponse:
    chunks = snapshot.chunks()
    state = {"started": False, "done": False}

    def step() -> bytes | None:
        if state["done"]:
            return None
        if not state["started"]:
            state["started"] = True
            return encoder.start()
        batch = next(chunks, None)
        if batch is None:
            state["done"] = True
            return encoder.end()
        return encoder.chunk(batch)

    # One chunk is read and encoded ahead while the one before is sent (never more: the
    # next read starts only when a part is taken, so at most two are in memory).
    pending: list[asyncio.Future[bytes | None]] = []

    async def parts() -> bytes | None:
        if not pending:
            pending.append(asyncio.ensure_future(asyncio.to_thread(step)))
        part = await pending.pop()
        if part is not None:
            pending.append(asyncio.ensure_future(asyncio.to_thread(step)))
        return part

    async def close() -> None:
        for ahead in pending:  # let a read in flight finish before the connection closes
            with contextlib.suppress(Exception):
                await ahead
        await asyncio.to_thread(snapshot.close)

    return StreamingResponse(
        parts,
        content_type=FORMATS[kind][0] + ("; charset=utf-8" if kind in ("csv",) else ""),
        headers={
            "content-disposition": f'attachment; filename="{filename}"',
            "cache-control": "no-cache",
        },
        close=close,
    )


async def table_download(datasette: Any, request: Any) -> Any:
    table = request.url_vars["table"]
    kind = request.url_vars["format"]
    if kind not in FORMATS or kind == "datapackage":
        return Response.error([f"Unknown download format: {kind}"], 404)
    opened = await open_snapshot(datasette, request, table)
    if isinstance(opened, Response):
        return opened
    assert opened.entry is not None
    encoder: Encoder
    if kind == "csv":
        encoder = CsvEncoder(opened, bom=request.args.get("bom") in ("1", "true", "yes"))
    elif kind == "json":
        encoder = JsonEncoder(opened)
    elif kind == "geojson":
        geometry = geometry_of(opened.entry)
        if geometry is None:
            await asyncio.to_thread(opened.close)
            return Response.error(
                [
                    f"{table} has no coordinates or geometry (no latitude/longitude, geopoint"
                    " or geometry field in its data dictionary): no GeoJSON download;"
                    f" use {download_path(table, 'csv')} or {download_path(table, 'json')}"
                ],
                404,
            )
        encoder = GeoJsonEncoder(opened, geometry)
    else:
        encoder = ParquetEncoder(opened)
    return stream(opened, encoder, kind, f"{table}.{FORMATS[kind][1]}")


def table_schema(entry: entries.Entry, names: list[str]) -> dict[str, Any]:
    """The Frictionless Table Schema of the CSV download (fields in its column order)."""
    by_name = {str(f["name"]): f for f in entry.dictionary}
    fields = []
    for name in names:
        spec = by_name.get(name, {})
        field: dict[str, Any] = {
            "name": name,
            "type": TABLE_SCHEMA_TYPES.get(str(spec.get("type")), "string"),
        }
        if spec.get("description"):
            field["description"] = str(spec["description"])
        if spec.get("type") == "geopoint":
            field["description"] = (
                field.get("description", "") + " (a point as 'latitude, longitude' text)"
            ).strip()
        if spec.get("unit"):
            field["unit"] = str(spec["unit"])
        if spec.get("type") == "boolean":
            field["trueValues"], field["falseValues"] = ["true"], ["false"]
        fields.append(field)
    return {"fields": fields, "missingValues": [""]}


def data_package(entry: entries.Entry, names: list[str], base: str) -> dict[str, Any]:
    """The Data Package of ``entry``: one resource, the CSV download, with its schema."""
    package: dict[str, Any] = {
        "profile": "tabular-data-package",
        "name": re.sub(r"[^a-z0-9._-]", "-", entry.table.lower()),
        "title": entry.title,
        "description": entry.description,
        "homepage": f"{base}/datasets/{entry.table}",
        "version": entry.live.version,
        "created": entry.last_updated,
        "keywords": [str(t) for t in entry.get("tags", [])],
        "resources": [
            {
                "name": re.sub(r"[^a-z0-9._-]", "-", entry.table.lower()),
                "path": base + download_path(entry.table, "csv"),
                "profile": "tabular-data-resource",
                "title": entry.title,
                "format": "csv",
                "mediatype": "text/csv",
                "encoding": "utf-8",
                "schema": table_schema(entry, names),
            }
        ],
    }
    if entry.license:
        package["licenses"] = [
            {"name": entry.license, "path": entries.license_url(entry.license) or entry.license}
        ]
    if entry.department:
        package["sources"] = [{"title": str(entry.department)}]
    steward = entry.get("steward")
    if steward:
        contributor: dict[str, Any] = {"title": str(steward), "role": "maintainer"}
        if entry.get("steward_email"):
            contributor["email"] = str(entry.get("steward_email"))
        package["contributors"] = [contributor]
    return package


async def datapackage_view(datasette: Any, request: Any) -> Any:
    table = request.url_vars["table"]
    opened = await open_snapshot(datasette, request, table)
    if isinstance(opened, Response):
        return opened
    try:
        assert opened.entry is not None
        body = data_package(opened.entry, opened.names, base_url(request))
    finally:
        await asyncio.to_thread(opened.close)
    response = Response.json(body)
    response.headers["content-disposition"] = f'attachment; filename="{table}.datapackage.json"'
    return response


ROUTES: list[tuple[str, Any]] = [
    (r"^/-/download/(?P<table>[^/]+)/datapackage\.json$", datapackage_view),
    (r"^/-/download/(?P<table>[^/]+)\.(?P<format>csv|json|geojson|parquet)$", table_download),
]
