"""Datasette plugin: publish a fully uploaded staging table as the live table in one step.

Datasette's write API creates and fills tables but has no "replace this table
atomically". The publisher therefore uploads into a hidden staging table (names
starting with ``_`` are hidden from residents) and then asks this plugin to swap it
into place. The swap, the version record and the stored metadata commit in ONE
SQLite transaction, so a reader sees the old table or the new one, never a mix.

Routes (all JSON):

``POST /-/civicflow/<db>/prepare``  ``{table, run_id}`` -> ``{staging, dropped}``
    drop staging tables left by earlier (dead) runs of ``table``; register a new one.
``POST /-/civicflow/<db>/load``  ``{table, columns, rows}`` -> ``{table, rows}``
    append a batch of plain JSON arrays to a staging table registered by ``prepare``
    (never any other table), with one ``executemany`` in one write transaction.
``POST /-/civicflow/<db>/swap``  ``{table, staging, expected_rows, version, run_id, metadata}``
    check the staging row count, swap, record the version and metadata.
``GET /-/civicflow/<db>/versions/<table>`` -> the live version, or 404.

Writes need the ``civicflow-publish`` action on the table (granted to the publisher
in datasette.yaml); anonymous callers get 403, bad tokens 401 (Datasette's own check).
``load`` exists for speed: Datasette's ``/-/insert`` goes through sqlite-utils, which
handles every value in Python and stored 13-19k rows/s of the 33-column 311 table;
one ``executemany`` of positional rows does several times that.
"""

from __future__ import annotations

import json
import operator
import re
import secrets
import sqlite3
from datetime import UTC, datetime
from typing import Any

from datasette import hookimpl
from datasette.permissions import Action
from datasette.resources import TableResource
from datasette.utils import escape_sqlite, tilde_decode
from datasette.utils.asgi import Response

PUBLISH_ACTION = "civicflow-publish"
VERSIONS = "_civicflow_versions"
STAGING = "_civicflow_staging"
METADATA = "_civicflow_metadata"
STAGE_PREFIX = "_civicflow_stage_"
OLD_PREFIX = "_civicflow_old_"
# Published names are plain identifiers; leading "_" is reserved for hidden tables.
TABLE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]*$")
RESOURCE_KEYS = ("title", "description", "license", "license_url", "source", "source_url")

SCHEMA = (
    f"""create table if not exists {VERSIONS} (
        id integer primary key,
        table_name text not null,
        version text not null,
        rows integer not null,
        run_id text,
        published_at text not null)""",
    f"create index if not exists {VERSIONS}_table on {VERSIONS} (table_name, id)",
    f"""create table if not exists {STAGING} (
        name text primary key,
        table_name text not null,
        run_id text,
        created_at text not null)""",
    f"create table if not exists {METADATA} (table_name text primary key, metadata text not null)",
)


class Refused(Exception):
    """A publish request that must not go ahead; becomes an HTTP error response."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@hookimpl
def register_actions(datasette: Any) -> list[Action]:
    return [
        Action(
            name=PUBLISH_ACTION,
            abbr="cfp",
            description="Publish a staged table as the live version (civicflow)",
            resource_class=TableResource,
        )
    ]


@hookimpl
def register_routes() -> list[tuple[str, Any]]:
    return [
        (r"^/-/civicflow/(?P<database>[^/]+)/prepare$", prepare_view),
        (r"^/-/civicflow/(?P<database>[^/]+)/load$", load_view),
        (r"^/-/civicflow/(?P<database>[^/]+)/swap$", swap_view),
        (r"^/-/civicflow/(?P<database>[^/]+)/versions/(?P<table>[^/]+)$", version_view),
        # Static mounts refuse directory URLs; residents follow links to /scorecard/.
        (r"^/scorecard/?$", lambda: Response.redirect("/scorecard/index.html")),
    ]


@hookimpl
def startup(datasette: Any) -> Any:
    async def restore_metadata() -> None:
        # portal.db is the record; the internal database is a cache of it (and may be new).
        for db in list(datasette.databases.values()):
            if db.is_memory or not await db.table_exists(METADATA):
                continue
            rows = await db.execute(f"select table_name, metadata from {METADATA}")
            for table, metadata in rows.rows:
                if await db.table_exists(table):
                    await apply_metadata(datasette, db.name, table, json.loads(metadata))

    return restore_metadata


# -- views ------------------------------------------------------------------------


async def prepare_view(datasette: Any, request: Any) -> Response:
    try:
        db, body = await _write_request(datasette, request)
        table = _table_name(body.get("table"))
        await _authorize(datasette, request, db.name, table)
        run_id = _optional_str(body, "run_id")

        def prepare(conn: sqlite3.Connection) -> dict[str, Any]:
            _ensure_schema(conn)
            stale = [
                r[0]
                for r in conn.execute(f"select name from {STAGING} where table_name = ?", [table])
            ]
            for name in stale:
                conn.execute(f"drop table if exists {escape_sqlite(name)}")
            conn.execute(f"delete from {STAGING} where table_name = ?", [table])
            staging = f"{STAGE_PREFIX}{table}_{secrets.token_hex(6)}"
            conn.execute(
                f"insert into {STAGING} (name, table_name, run_id, created_at) values (?, ?, ?, ?)",
                [staging, table, run_id, _now()],
            )
            return {"ok": True, "staging": staging, "dropped": stale}

        return Response.json(await db.execute_write_fn(prepare, request=request))
    except Refused as exc:
        return Response.error([str(exc)], exc.status)
    except sqlite3.Error as exc:
        return Response.error([f"prepare failed: {exc}"], 500)


async def load_view(datasette: Any, request: Any) -> Response:
    try:
        db, body = await _write_request(datasette, request)
        staging = body.get("table")
        if not isinstance(staging, str) or not staging.startswith(STAGE_PREFIX):
            raise Refused(
                400,
                f"table must name a {STAGE_PREFIX}* staging table, got {staging!r};"
                " live tables are never loaded",
            )
        columns = body.get("columns")
        rows = body.get("rows")
        if (
            not isinstance(columns, list)
            or not columns
            or not all(isinstance(c, str) for c in columns)
            or len(set(columns)) != len(columns)
        ):
            raise Refused(400, "columns must be a non-empty list of distinct column names")
        if not isinstance(rows, list) or not all(type(row) is list for row in rows):
            raise Refused(400, "rows must be a list of arrays, one value per column")
        limit = datasette.setting("max_insert_rows")
        if len(rows) > limit:
            raise Refused(400, f"{len(rows)} rows in one batch; the limit is {limit}")
        # Permission is on the live table the staging table belongs to.
        table = await _staging_owner(db, staging)
        await _authorize(datasette, request, db.name, table)

        def load(conn: sqlite3.Connection) -> dict[str, Any]:
            return _load(conn, table, staging, columns, rows)

        return Response.json(await db.execute_write_fn(load, request=request))
    except Refused as exc:
        return Response.error([str(exc)], exc.status)
    except sqlite3.Error as exc:
        return Response.error([f"load failed, batch not stored: {exc}"], 500)


async def swap_view(datasette: Any, request: Any) -> Response:
    try:
        db, body = await _write_request(datasette, request)
        table = _table_name(body.get("table"))
        await _authorize(datasette, request, db.name, table)
        staging = body.get("staging")
        expected = body.get("expected_rows")
        version = body.get("version")
        if not isinstance(staging, str) or not staging.startswith(STAGE_PREFIX):
            raise Refused(400, f"staging must name a {STAGE_PREFIX}* table")
        if not isinstance(expected, int) or isinstance(expected, bool) or expected < 0:
            raise Refused(400, "expected_rows must be a non-negative integer")
        if not isinstance(version, str) or not version:
            raise Refused(400, "version is required")
        run_id = _optional_str(body, "run_id")
        metadata = body.get("metadata") or {}
        if not isinstance(metadata, dict):
            raise Refused(400, "metadata must be an object")

        def swap(conn: sqlite3.Connection) -> dict[str, Any]:
            return _swap(conn, table, staging, expected, version, run_id, metadata)

        result = await db.execute_write_fn(swap, request=request)
    except Refused as exc:
        return Response.error([str(exc)], exc.status)
    except sqlite3.Error as exc:
        return Response.error([f"swap failed, live table unchanged: {exc}"], 500)
    # After the commit: the internal database is separate, so metadata follows the swap.
    await apply_metadata(datasette, db.name, table, metadata)
    # Table listings come from a schema cache refreshed at most once a second.
    await datasette.refresh_schemas(force=True)
    return Response.json(result)


async def version_view(datasette: Any, request: Any) -> Response:
    db = _database(datasette, request)
    if db is None:
        return Response.error(["Database not found"], 404)
    table = tilde_decode(request.url_vars["table"])
    resource = TableResource(database=db.name, table=table)
    if not await datasette.allowed(action="view-table", resource=resource, actor=request.actor):
        return Response.error(["Permission denied"], 403)
    if await db.table_exists(VERSIONS) and await db.table_exists(table):
        rows = await db.execute(
            f'select table_name as "table", version, rows, run_id, published_at from {VERSIONS}'
            " where table_name = ? order by id desc limit 1",
            [table],
        )
        if rows.rows:
            return Response.json({"ok": True, **dict(rows.dicts()[0])})
    return Response.error([f"{table} has no published version"], 404)


# -- load and swap ---------------------------------------------------------------------


def _load(
    conn: sqlite3.Connection, table: str, staging: str, columns: list[str], rows: list[Any]
) -> dict[str, Any]:
    """Runs inside Datasette's write transaction: the whole batch is stored or none of it."""
    if _registered_owner(conn, staging) != table or not _exists(conn, staging):
        raise Refused(
            409,
            f"{staging} is no longer a staging table of {table} (a later publish cleaned it up)",
        )
    known = {r[1] for r in conn.execute(f"pragma table_info({escape_sqlite(staging)})")}
    unknown = [c for c in columns if c not in known]
    if unknown:
        raise Refused(400, f"{staging} has no column(s) {', '.join(map(repr, unknown))}")
    sql = (
        f"insert into {escape_sqlite(staging)} ({', '.join(map(escape_sqlite, columns))})"
        f" values ({', '.join('?' * len(columns))})"
    )
    # executemany stops at the row it could not store; the iterator says which one.
    remaining = iter(rows)
    try:
        conn.executemany(sql, remaining)
    except (sqlite3.IntegrityError, sqlite3.ProgrammingError, sqlite3.InterfaceError) as exc:
        failed = len(rows) - operator.length_hint(remaining) - 1
        raise Refused(
            400, f"{exc} (row {failed} of this batch of {len(rows)}; batch not stored)"
        ) from exc
    return {"ok": True, "table": staging, "rows": len(rows)}


def _swap(
    conn: sqlite3.Connection,
    table: str,
    staging: str,
    expected: int,
    version: str,
    run_id: str | None,
    metadata: dict[str, Any],
) -> dict[str, Any]:
    """Runs inside Datasette's write transaction (BEGIN IMMEDIATE ... COMMIT)."""
    _ensure_schema(conn)
    if _registered_owner(conn, staging) != table or not _exists(conn, staging):
        raise Refused(
            409,
            f"{staging} is not a staging table of {table} (a later publish may have "
            "cleaned it up); the live table is unchanged",
        )
    rows = conn.execute(f"select count(*) from {escape_sqlite(staging)}").fetchone()[0]
    if rows != expected:
        raise Refused(
            409,
            f"staging table holds {rows} rows, expected {expected}; the live table is unchanged",
        )
    replaced = _exists(conn, table)
    # Legacy renames leave views and triggers naming the live table alone, so they
    # follow the new table instead of the dropped one.
    conn.execute("PRAGMA legacy_alter_table = ON")
    try:
        old = f"{OLD_PREFIX}{table}_{secrets.token_hex(6)}"
        if replaced:
            conn.execute(f"alter table {escape_sqlite(table)} rename to {escape_sqlite(old)}")
        conn.execute(f"alter table {escape_sqlite(staging)} rename to {escape_sqlite(table)}")
        if replaced:
            conn.execute(f"drop table {escape_sqlite(old)}")
    finally:
        conn.execute("PRAGMA legacy_alter_table = OFF")
    published_at = _now()
    conn.execute(f"delete from {STAGING} where name = ?", [staging])
    conn.execute(
        f"insert into {VERSIONS} (table_name, version, rows, run_id, published_at)"
        " values (?, ?, ?, ?, ?)",
        [table, version, rows, run_id, published_at],
    )
    conn.execute(
        f"insert into {METADATA} (table_name, metadata) values (?, ?)"
        " on conflict (table_name) do update set metadata = excluded.metadata",
        [table, json.dumps(metadata)],
    )
    return {
        "ok": True,
        "table": table,
        "version": version,
        "rows": rows,
        "run_id": run_id,
        "published_at": published_at,
        "replaced": replaced,
    }


async def apply_metadata(
    datasette: Any, database: str, table: str, metadata: dict[str, Any]
) -> None:
    """Replace the table's metadata in Datasette's internal database (what pages show)."""
    internal = datasette.get_internal_database()
    for catalog in ("metadata_resources", "metadata_columns"):
        await internal.execute_write(
            f"delete from {catalog} where database_name = ? and resource_name = ?",
            [database, table],
        )
    for key in RESOURCE_KEYS:
        if metadata.get(key):
            await datasette.set_resource_metadata(database, table, key, str(metadata[key]))
    for key, value in (metadata.get("extra") or {}).items():
        if value is not None and key not in RESOURCE_KEYS:
            text = value if isinstance(value, str) else json.dumps(value)
            await datasette.set_resource_metadata(database, table, key, text)
    for column, description in (metadata.get("columns") or {}).items():
        await datasette.set_column_metadata(
            database, table, column, "description", str(description)
        )


# -- helpers ----------------------------------------------------------------------


def _database(datasette: Any, request: Any) -> Any | None:
    try:
        return datasette.get_database(route=request.url_vars["database"])
    except KeyError:
        return None


async def _write_request(datasette: Any, request: Any) -> tuple[Any, dict[str, Any]]:
    if request.method != "POST":
        raise Refused(405, "POST required")
    if request.actor is None:
        raise Refused(403, "Permission denied: a publisher token is required")
    db = _database(datasette, request)
    if db is None:
        raise Refused(404, "Database not found")
    if not db.is_mutable:
        raise Refused(403, "Database is immutable")
    try:
        body = await request.json()
    except Exception as exc:  # noqa: BLE001 - invalid JSON or a body over the size limit
        raise Refused(400, f"Invalid JSON body: {exc}") from exc
    if not isinstance(body, dict):
        raise Refused(400, "JSON body must be an object")
    return db, body


async def _authorize(datasette: Any, request: Any, database: str, table: str) -> None:
    resource = TableResource(database=database, table=table)
    if not await datasette.allowed(action=PUBLISH_ACTION, resource=resource, actor=request.actor):
        raise Refused(403, f"Permission denied: need {PUBLISH_ACTION} on {table}")


def _table_name(value: Any) -> str:
    if not isinstance(value, str) or not TABLE_NAME.match(value):
        raise Refused(400, f"table must be a plain name (letters, digits, _ and -), got {value!r}")
    return value


def _optional_str(body: dict[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is not None and not isinstance(value, str):
        raise Refused(400, f"{key} must be a string")
    return value


async def _staging_owner(db: Any, staging: str) -> str:
    """The live table a staging table was registered for by ``prepare``; else refused."""
    if await db.table_exists(STAGING):
        rows = await db.execute(f"select table_name from {STAGING} where name = ?", [staging])
        if rows.rows:
            return str(rows.rows[0][0])
    raise Refused(403, f"{staging} is not a staging table registered by prepare; nothing loaded")


def _registered_owner(conn: sqlite3.Connection, staging: str) -> str | None:
    row = conn.execute(f"select table_name from {STAGING} where name = ?", [staging]).fetchone()
    return None if row is None else str(row[0])


def _ensure_schema(conn: sqlite3.Connection) -> None:
    for statement in SCHEMA:
        conn.execute(statement)


def _exists(conn: sqlite3.Connection, table: str) -> bool:
    row = conn.execute(
        "select 1 from sqlite_master where type = 'table' and name = ?", [table]
    ).fetchone()
    return row is not None


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
