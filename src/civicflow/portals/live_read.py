"""Read a live table and its version record in one snapshot, as Arrow (server side).

The plugin's read-only ``live`` route serves this to plan a publish (``--dry-run``):
the version record, the columns with their SQLite types, the metadata stored with
the version and, when asked, the rows, all read inside one read transaction so they
describe one version even while another run swaps in the next. Rows travel as an
Arrow IPC stream (typed, columnar, far smaller and faster to parse than JSON rows);
the header rides in the schema's metadata under ``civicflow``.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

import pyarrow as pa
from datasette.utils import escape_sqlite

from civicflow.portals import publish_store as store

#: rows per Arrow record batch (bounds the Python objects alive at once)
BATCH_ROWS = 50_000
ARROW_TYPES = {"INTEGER": pa.int64(), "REAL": pa.float64()}
#: SQLite's declared type -> the column type a publish asks for (publish_store.COLUMN_TYPES)
PUBLISH_TYPES = {sql: kind for kind, sql in store.COLUMN_TYPES.items()}
CONTENT_TYPE = "application/vnd.apache.arrow.stream"
HEADER_KEY = b"civicflow"


def live_table(conn: sqlite3.Connection, table: str, *, with_rows: bool) -> bytes | None:
    """The table's live state as Arrow IPC bytes, or None when it has no live version."""
    conn.execute("begin")  # one snapshot: the version record and the rows agree
    try:
        live = store.live_version(conn, table) if store.exists(conn, store.VERSIONS) else None
        if live is None:
            return None
        columns = [(r[1], str(r[2]).upper()) for r in conn.execute(_pragma(table))]
        header = {
            "version": live,
            "columns": [[name, PUBLISH_TYPES.get(kind, kind.lower())] for name, kind in columns],
            "metadata": _metadata(conn, table),
        }
        schema = pa.schema(
            [pa.field(name, ARROW_TYPES.get(kind, pa.string())) for name, kind in columns],
            metadata={HEADER_KEY: json.dumps(header).encode()},
        )
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, schema) as writer:
            if with_rows:
                _write_rows(conn, table, schema, writer)
        return bytes(sink.getvalue().to_pybytes())
    finally:
        conn.execute("rollback")


def _pragma(table: str) -> str:
    return f"select * from pragma_table_info({_quote_literal(table)})"


def _quote_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _metadata(conn: sqlite3.Connection, table: str) -> dict[str, Any] | None:
    if not store.exists(conn, store.METADATA):
        return None
    row = conn.execute(
        f"select metadata from {store.METADATA} where table_name = ?", [table]
    ).fetchone()
    return None if row is None else dict(json.loads(row[0]))


def _write_rows(
    conn: sqlite3.Connection, table: str, schema: pa.Schema, writer: pa.ipc.RecordBatchStreamWriter
) -> None:
    names = ", ".join(escape_sqlite(n) for n in schema.names)
    cursor = conn.execute(f"select {names} from {escape_sqlite(table)}")
    while batch := cursor.fetchmany(BATCH_ROWS):
        # zip(*) transposes in C; pa.array converts each column in one call.
        columns = list(zip(*batch, strict=True))
        arrays = [_array(values, f.type) for values, f in zip(columns, schema, strict=True)]
        writer.write_batch(pa.record_batch(arrays, schema=schema))


def _array(values: tuple[Any, ...], kind: pa.DataType) -> pa.Array:
    try:
        return pa.array(values, type=kind)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        # SQLite lets a column hold values of another type than declared (civicflow's
        # loads never do); they arrive as null, so the plan counts those rows as changed.
        return pa.nulls(len(values), type=kind)
