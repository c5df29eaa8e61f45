"""Datasette plugin: the ONLY way to write the portal, one publish step per route.

Datasette's write API creates and fills tables but has no "replace this table
atomically", and a token allowed to use it could also insert straight into a live
table or into the version history. The publisher is therefore granted no Datasette
write action at all: only this plugin's ``civicflow-publish`` action, per table, and
this plugin writes nothing but staging tables it created and the swap. Each step's
SQL lives in publish_store.py and commits in ONE SQLite transaction; readers see the
old table or the new one, never a mix.

Routes (JSON but for ``load``; writes are POST with a token allowed ``civicflow-publish``
on ``table``):

``prepare``  ``{table, run_id, columns: [[name, type]], primary_key, base, lease_seconds}``
    -> ``{staging, reclaimed, concurrent}``: create this run's leased staging table;
    reclaim only staging tables whose lease expired; refuse if the live serial is not
    ``base`` (another run published since this one began).
``load?table=&staging=&run_id=&rows=``  body: an Arrow IPC stream
    (``application/vnd.apache.arrow.stream``) of ``rows`` rows whose columns are named
    after the staging table's and typed as declared (int64, float64, string): append
    it to this run's staging table (never any other table) and renew its lease. The
    token is checked before the body is read; a body that is not a complete, valid
    stream of exactly ``rows`` rows is refused (400) and nothing is stored.
``swap``  ``{table, staging, run_id, expected_rows, version, data_version, base, metadata,
    indexes}``: compare-and-swap: check the row count and that the live serial is still
    ``base``, then swap, build ``indexes`` (lists of column names), record the version
    and metadata; the replaced rows, private from then on, are dropped after the commit.
``apply``  ``{table, run_id, upserts, deletes, primary_key, version, data_version, base,
    metadata, indexes}``: a change set as a new version: ``upserts`` (full rows) and
    ``deletes`` (key columns) name this run's staging tables (or null), loaded as for a
    swap; in one transaction: check the base serial, delete by key, write the upserts,
    make the indexes ``indexes`` (if given), record.
``reindex``  ``{table, indexes}``: make the live table's indexes ``indexes`` (a spec
    marked other fields since the live version went out); no new version.
``relabel``  ``{table, run_id, version, data_version, base, metadata}``: a new version
    with the same rows and new metadata (a title or description edit).
``discard``  ``{table, staging, run_id}``: drop this run's staging table.
``GET staging/<table>``: this table's staging tables with run, lease and rows (publisher).
``GET versions/<table>``: the live version and its indexes (anyone who may view the
    table), or 404.
``GET live/<table>[?rows=1]``: read-only, for planning a publish (``--dry-run``): the
    version record, columns, stored metadata and (with ``rows=1``) the live rows, from
    one snapshot, as an Arrow IPC stream (live_read.py); anyone who may view the table.

Anonymous callers get 403, bad or expired tokens 401 (Datasette's own check).
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import weakref
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs

import pyarrow as pa
from datasette import hookimpl
from datasette.permissions import Action, PermissionSQL
from datasette.resources import TableResource
from datasette.utils import tilde_decode
from datasette.utils.asgi import Response

from civicflow.portals import live_read, private_tables
from civicflow.portals import publish_store as store
from civicflow.portals.publish_store import Conflict, Refused

PUBLISH_ACTION = "civicflow-publish"
#: the body of a load request
ARROW_STREAM = "application/vnd.apache.arrow.stream"
RESOURCE_KEYS = ("title", "description", "license", "license_url", "source", "source_url")
DEFAULT_LEASE_S = 300
#: deny rows for view-table on every private table Datasette's catalog knows
PRIVATE_TABLES_SQL = " union all ".join(
    "select database_name as parent, table_name as child, 0 as allow,"
    " 'civicflow: staging tables are private' as reason from catalog_tables"
    f" where substr(table_name, 1, {len(prefix)}) = '{prefix}'"
    for prefix in store.PRIVATE_PREFIXES
)


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
    base = r"^/-/civicflow/(?P<database>[^/]+)"
    return [
        (base + r"/prepare$", prepare_view),
        (base + r"/load$", load_view),
        (base + r"/swap$", swap_view),
        (base + r"/apply$", apply_view),
        (base + r"/relabel$", relabel_view),
        (base + r"/reindex$", reindex_view),
        (base + r"/discard$", discard_view),
        (base + r"/staging/(?P<table>[^/]+)$", staging_view),
        (base + r"/versions/(?P<table>[^/]+)$", version_view),
        (base + r"/live/(?P<table>[^/]+)$", live_view),
        # Static mounts refuse directory URLs; residents follow links to /scorecard/
        # (the Spanish catalog's link carries ?lang=es: its page is index.es.html).
        (r"^/scorecard/?$", _scorecard_page),
    ]


def _scorecard_page(request: Any) -> Response:
    page = "index.es.html" if request.args.get("lang") == "es" else "index.html"
    return Response.redirect(f"/scorecard/{page}")


# -- reads under load -----------------------------------------------------------------
#
# What a filtered table query or export of a million-row table costs, and the places
# Datasette 1.0a41 does more work than the answer needs:
#
# * ``_extra=count`` runs ``select count(*) from (select * FROM_SQL limit N)``. SQLite
#   does not flatten a sub-query with a LIMIT under an aggregate, so ``select *`` makes
#   it read every matching row whole (all columns, from the table) just to count them:
#   50-80 ms (up to 260 under load) for 10,001 rows of the 311 table, on every page
#   view. Counting ``select 1`` instead lets the filter's index answer alone (a covering
#   index search, under 1 ms), with the same limit and so the same ``count_truncated``.
# * A streamed CSV (``_stream=on``) is meant to page at ``_size=max``; the view sets
#   that in a dict it then never passes on, so the export pages at the default 100 rows
#   (every page is a whole table view: permission checks, schema look-ups and a dozen
#   trips to a SQL thread), and writes one ASGI message per CSV row. The wrapper below
#   gives streamed exports that do not choose a page size ``_size=max`` and sends the
#   rows in chunks.
# * Exports are seconds of Python on the event loop every request shares: they run
#   one at a time and behind interactive requests (``Exports``).

#: streamed response bodies are sent in chunks of at least this many bytes
STREAM_CHUNK_BYTES = 64 * 1024
#: streamed exports served at once, the chunks they are sent in, and how long one
#: waits after a chunk while interactive requests are in flight (see Exports)
EXPORT_SLOTS = 1
EXPORT_CHUNK_BYTES = 16 * 1024
EXPORT_MAX_PAUSE_S = 0.05
EXPORT_POLL_S = 0.002
#: the catalog's whole-table downloads (civicflow.catalog.downloads)
DOWNLOADS = "/-/download/"


def count_sql(from_sql: str, limit: int) -> str:
    """The count Datasette's ``count`` extra asks for, answerable from an index."""
    return f"select count(*) from (select 1 {from_sql} limit {limit})"


def _patch_count_extra() -> None:
    from datasette.database import QueryInterrupted
    from datasette.views import table_extras

    original = table_extras.CountExtra.resolve
    if getattr(original, "civicflow", False):
        return

    async def resolve(self: Any, context: Any) -> int | None:
        if (
            context.nocount
            or not context.count_sql
            or (not context.db.is_mutable and context.datasette.inspect_data)
        ):
            # nothing to count, or an immutable database's counts: Datasette's own way
            return await original(self, context)
        try:
            rows = await context.db.execute(
                count_sql(context.from_sql, context.db.count_limit + 1), context.from_sql_params
            )
        except QueryInterrupted:
            return None
        return int(rows.rows[0][0])

    resolve.civicflow = True  # type: ignore[attr-defined]
    resolve.__doc__ = original.__doc__
    table_extras.CountExtra.resolve = resolve  # type: ignore[method-assign]


_patch_count_extra()


def is_streamed_export(scope: dict[str, Any]) -> bool:
    """Whether ``scope`` asks for a table's (or view's) whole CSV: ``/db/table.csv?_stream=``."""
    path = scope.get("path") or ""
    parts = path.strip("/").split("/")
    if (
        scope.get("type") != "http"
        or not path.endswith(".csv")
        or len(parts) != 2
        or parts[0].startswith("-")
    ):
        return False
    args = parse_qs((scope.get("query_string") or b"").decode("latin-1"), keep_blank_values=True)
    return any(args.get("_stream", []))


def with_stream_page_size(scope: dict[str, Any]) -> dict[str, Any]:
    """A streamed export's ``scope`` with ``_size=max`` when it names no ``_size`` (what
    Datasette's CSV streaming intends: pages of ``max_returned_rows``)."""
    query = (scope.get("query_string") or b"").decode("latin-1")
    if "_size" in parse_qs(query, keep_blank_values=True):
        return scope
    joined = f"{query}&_size=max" if query else "_size=max"
    return {**scope, "query_string": joined.encode("latin-1")}


def chunked_send(
    send: Any,
    chunk_bytes: int = STREAM_CHUNK_BYTES,
    between_chunks: Callable[[], Awaitable[None]] | None = None,
) -> Any:
    """``send`` that joins a streamed body's small messages into ``chunk_bytes`` ones
    (the last message, and everything else, passes at once), awaiting
    ``between_chunks`` after each chunk it sends."""
    held: list[bytes] = []
    size = 0

    async def buffered(message: dict[str, Any]) -> None:
        nonlocal size
        if message.get("type") == "http.response.body":
            body = message.get("body", b"")
            if message.get("more_body"):
                held.append(body)
                size += len(body)
                if size < chunk_bytes:
                    return
                message = {**message, "body": b"".join(held)}
                held.clear()
                size = 0
                await send(message)
                if between_chunks is not None:
                    await between_chunks()
                return
            if held:
                message = {**message, "body": b"".join([*held, body])}
                held.clear()
                size = 0
        await send(message)

    return buffered


class Exports:
    """Streamed exports go behind interactive requests.

    An export of tens of thousands of rows is seconds of Python work (rows to CSV) on
    the one event loop and GIL every other request needs, and it hands the loop back
    only between its writes: each of the two dozen steps of a filtered JSON query (SQL
    on a thread, permission checks, rendering) waited for a stretch of CSV rows, and
    for every export running at once. So at most ``slots`` exports run at once (the
    rest wait their turn; they run back to back at the speed the process can give
    them), and after each chunk an export waits while interactive requests are in
    flight, up to ``max_pause_s``, so it still moves under a steady stream of them.
    One semaphore per event loop (tests run several loops)."""

    def __init__(self, slots: int = EXPORT_SLOTS, max_pause_s: float = EXPORT_MAX_PAUSE_S):
        self.slots, self.max_pause_s = slots, max_pause_s
        #: requests in flight that are not streamed exports
        self.interactive = 0
        self._slots: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore]
        self._slots = weakref.WeakKeyDictionary()

    def slot(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        semaphore = self._slots.get(loop)
        if semaphore is None:
            semaphore = self._slots[loop] = asyncio.Semaphore(self.slots)
        return semaphore

    async def between_chunks(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_pause_s
        await asyncio.sleep(0)
        while self.interactive and loop.time() < deadline:
            await asyncio.sleep(EXPORT_POLL_S)


@hookimpl
def asgi_wrapper(datasette: Any) -> Callable[[Any], Any]:
    exports = Exports()

    def wrap(app: Any) -> Any:
        async def portal_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
            if scope.get("type") != "http":
                await app(scope, receive, send)
            elif is_streamed_export(scope):
                async with exports.slot():
                    chunked = chunked_send(send, EXPORT_CHUNK_BYTES, exports.between_chunks)
                    await app(with_stream_page_size(scope), receive, chunked)
            elif (scope.get("path") or "").startswith(DOWNLOADS):
                # whole-table downloads are bulk too: exports do not wait for them
                await app(scope, receive, chunked_send(send))
            else:
                exports.interactive += 1
                try:
                    await app(scope, receive, chunked_send(send))
                finally:
                    exports.interactive -= 1

        return portal_app

    return wrap


@hookimpl
def prepare_connection(conn: sqlite3.Connection, database: str, datasette: Any) -> None:
    # Every connection to a portal database (readers' and the writer's) refuses to
    # read staging tables; Datasette's own internal database is left alone.
    if database != "_internal":
        private_tables.protect(conn)


@hookimpl
def permission_resources_sql(datasette: Any, actor: Any, action: str) -> PermissionSQL | None:
    # Table pages of private tables answer 403 and listings leave them out; the
    # authorizer above is what actually stops every read.
    if action != "view-table":
        return None
    return PermissionSQL(sql=PRIVATE_TABLES_SQL)


@hookimpl
def startup(datasette: Any) -> Any:
    async def restore_metadata() -> None:
        # portal.db is the record; the internal database is a cache of it (and may be new).
        for db in list(datasette.databases.values()):
            if db.is_memory or not await db.table_exists(store.METADATA):
                continue
            rows = await db.execute(f"select table_name, metadata from {store.METADATA}")
            for table, metadata in rows.rows:
                if await db.table_exists(table):
                    await apply_metadata(datasette, db.name, table, json.loads(metadata))

    return restore_metadata


# -- views ------------------------------------------------------------------------


Step = Callable[[sqlite3.Connection], dict[str, Any]]
#: parses a request body into the step to run (raises Refused on a bad body)
MakeStep = Callable[[str, dict[str, Any]], Step]


async def _run_step(
    datasette: Any, request: Any, make: MakeStep
) -> tuple[Any, str, dict[str, Any], dict[str, Any]] | Response:
    """Authorise, parse, and run one step in one write transaction; errors as JSON."""
    try:
        db, body = await _write_request(datasette, request)
        table = _table_name(body.get("table"))
        await _authorize(datasette, request, db.name, table)
        step = make(table, body)
        result = await db.execute_write_fn(private_tables.trusted(step), request=request)
        return db, table, body, result
    except Conflict as exc:
        other = exc.live.get("run_id")
        return Response.json(
            {"ok": False, "errors": [str(exc)], "conflict": True, "other_run": other}, 409
        )
    except Refused as exc:
        return Response.error([str(exc)], exc.status)
    except sqlite3.Error as exc:
        return Response.error([f"failed, the live table is unchanged: {exc}"], 500)


async def prepare_view(datasette: Any, request: Any) -> Response:
    def make(table: str, body: dict[str, Any]) -> Step:
        run_id = _required_str(body, "run_id")
        columns = _columns(body.get("columns"))
        primary_key = _str_list(body.get("primary_key") or [], "primary_key")
        base, lease = _serial(body.get("base")), _lease_seconds(body.get("lease_seconds"))
        return lambda conn: store.prepare(conn, table, run_id, columns, primary_key, base, lease)

    return await _respond(datasette, request, make, refresh=True)


async def load_view(datasette: Any, request: Any) -> Response:
    """One batch into a staging table: the token is checked before the body is read."""
    try:
        db = _write_database(datasette, request)
        table = _table_name(request.args.get("table"))
        await _authorize(datasette, request, db.name, table)
        staging = _staging_name(request.args.get("staging"))
        run_id = _required_str({"run_id": request.args.get("run_id")}, "run_id")
        rows = _row_count(request.args.get("rows"), datasette.setting("max_insert_rows"))
        kind = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
        if kind != ARROW_STREAM:
            raise Refused(
                415,
                f"load takes an Arrow IPC stream (content-type {ARROW_STREAM}), got "
                f"{kind or 'no content type'}; nothing stored",
            )
        try:
            body = await request.post_body()
        except Exception as exc:  # noqa: BLE001 - the body is over max_post_body_bytes
            raise Refused(getattr(exc, "status", 400), f"{exc}; nothing stored") from exc

        def step(conn: sqlite3.Connection) -> dict[str, Any]:
            # Decoded on the write thread, not the event loop readers share.
            return store.load(conn, table, staging, run_id, read_batch(body, rows))

        result = await db.execute_write_fn(private_tables.trusted(step), request=request)
    except Refused as exc:
        return Response.error([str(exc)], exc.status)
    except sqlite3.Error as exc:
        return Response.error([f"failed, the live table is unchanged: {exc}"], 500)
    return Response.json(result)


def read_batch(body: bytes, rows: int) -> pa.Table:
    """The Arrow IPC stream in ``body``: complete, valid, and exactly ``rows`` rows."""
    try:
        with pa.ipc.open_stream(pa.py_buffer(body)) as reader:
            data = reader.read_all()
        data.validate(full=True)
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise Refused(
            400,
            f"the body is not a valid Arrow IPC stream ({exc}); batch not stored, "
            "the live table is unchanged",
        ) from exc
    if data.num_rows != rows:
        raise Refused(
            400,
            f"the body holds {data.num_rows} rows, the request says {rows} (a truncated "
            "or corrupt upload); batch not stored, the live table is unchanged",
        )
    return data


def _row_count(value: Any, limit: int) -> int:
    try:
        rows = int(value)
    except (TypeError, ValueError):
        rows = -1
    if not 0 <= rows <= limit:
        raise Refused(400, f"rows must be the batch's row count, 0..{limit}; got {value!r}")
    return rows


async def swap_view(datasette: Any, request: Any) -> Response:
    def make(table: str, body: dict[str, Any]) -> Step:
        staging = _staging_name(body.get("staging"))
        run_id = _required_str(body, "run_id")
        expected = body.get("expected_rows")
        if not isinstance(expected, int) or isinstance(expected, bool) or expected < 0:
            raise Refused(400, "expected_rows must be a non-negative integer")
        versions, base, metadata = _versions(body), _serial(body.get("base")), _metadata(body)
        indexes = _indexes(body.get("indexes") or [])
        return lambda conn: store.swap(
            conn, table, staging, run_id, expected, versions, base, metadata, indexes
        )

    return await _respond(datasette, request, make, publishes=True)


async def apply_view(datasette: Any, request: Any) -> Response:
    def make(table: str, body: dict[str, Any]) -> Step:
        run_id = _required_str(body, "run_id")
        stages = (_optional_staging(body, "upserts"), _optional_staging(body, "deletes"))
        primary_key = _str_list(body.get("primary_key"), "primary_key")
        versions, base, metadata = _versions(body), _serial(body.get("base")), _metadata(body)
        given = body.get("indexes")
        indexes = None if given is None else _indexes(given)
        return lambda conn: store.apply_changes(
            conn, table, run_id, stages, primary_key, versions, base, metadata, indexes
        )

    return await _respond(datasette, request, make, publishes=True)


async def relabel_view(datasette: Any, request: Any) -> Response:
    def make(table: str, body: dict[str, Any]) -> Step:
        run_id = _required_str(body, "run_id")
        versions, base, metadata = _versions(body), _serial(body.get("base")), _metadata(body)
        return lambda conn: store.relabel(conn, table, run_id, versions, base, metadata)

    return await _respond(datasette, request, make, publishes=True)


async def reindex_view(datasette: Any, request: Any) -> Response:
    def make(table: str, body: dict[str, Any]) -> Step:
        indexes = _indexes(body.get("indexes"))
        return lambda conn: store.reindex(conn, table, indexes)

    return await _respond(datasette, request, make, refresh=True)


async def discard_view(datasette: Any, request: Any) -> Response:
    def make(table: str, body: dict[str, Any]) -> Step:
        staging = _staging_name(body.get("staging"))
        run_id = _required_str(body, "run_id")
        return lambda conn: store.discard(conn, table, staging, run_id)

    return await _respond(datasette, request, make)


async def _respond(
    datasette: Any,
    request: Any,
    make: MakeStep,
    *,
    publishes: bool = False,
    refresh: bool = False,
) -> Response:
    outcome = await _run_step(datasette, request, make)
    if isinstance(outcome, Response):
        return outcome
    db, table, body, result = outcome
    if result.pop("old_table", None) is not None:
        # The replaced rows are private already; dropping them needs no one to wait.
        drop = private_tables.trusted(lambda conn: store.drop_old(conn, table))
        await db.execute_write_fn(drop, block=False)
    if publishes:
        # After the commit: the internal database is separate, so metadata follows the
        # swap (a restart restores it from portal.db, the record).
        await apply_metadata(datasette, db.name, table, _metadata(body))
    if publishes or refresh:
        # Listings and the private-table rule read a schema cache refreshed at most
        # once a second; a new staging or live table must be in it now.
        await datasette.refresh_schemas(force=True)
    return Response.json(result)


async def staging_view(datasette: Any, request: Any) -> Response:
    db = _database(datasette, request)
    if db is None:
        return Response.error(["Database not found"], 404)
    table = tilde_decode(request.url_vars["table"])
    try:
        await _authorize(datasette, request, db.name, table)
    except Refused as exc:
        return Response.error([str(exc)], exc.status)
    # On the write connection, never a reader's: SQLite authorises a statement when it
    # is compiled, and a reader's connection would cache this trusted one for reuse.
    status = await db.execute_write_fn(
        private_tables.trusted(lambda conn: {"staging": store.staging_status(conn, table)}),
        transaction=False,
    )
    return Response.json({"ok": True, "table": table, **status})


async def version_view(datasette: Any, request: Any) -> Response:
    db = _database(datasette, request)
    if db is None:
        return Response.error(["Database not found"], 404)
    table = tilde_decode(request.url_vars["table"])
    resource = TableResource(database=db.name, table=table)
    if not await datasette.allowed(action="view-table", resource=resource, actor=request.actor):
        return Response.error(["Permission denied"], 403)

    def read(conn: sqlite3.Connection) -> dict[str, Any] | None:
        live = store.live_version(conn, table)
        return None if live is None else {**live, "indexes": store.table_indexes(conn, table)}

    live = None
    if await db.table_exists(store.VERSIONS):
        live = await db.execute_fn(read)
    if live is None:
        return Response.error([f"{table} has no published version"], 404)
    return Response.json({"ok": True, **live})


async def live_view(datasette: Any, request: Any) -> Response:
    db = _database(datasette, request)
    if db is None:
        return Response.error(["Database not found"], 404)
    try:
        # Live tables only: staging and bookkeeping names (leading "_") are refused.
        table = _table_name(tilde_decode(request.url_vars["table"]))
    except Refused as exc:
        return Response.error([str(exc)], exc.status)
    resource = TableResource(database=db.name, table=table)
    if not await datasette.allowed(action="view-table", resource=resource, actor=request.actor):
        return Response.error(["Permission denied"], 403)
    with_rows = request.args.get("rows") == "1"
    body = await db.execute_fn(lambda conn: live_read.live_table(conn, table, with_rows=with_rows))
    if body is None:
        return Response.error([f"{table} has no published version"], 404)
    return Response(body, content_type=live_read.CONTENT_TYPE)


async def apply_metadata(
    datasette: Any, database: str, table: str, metadata: dict[str, Any]
) -> None:
    """Replace the table's metadata in Datasette's internal database (what pages show).

    One transaction, so a page shows the old metadata or the new, never half of each.
    """
    resources = [(k, str(metadata[k])) for k in RESOURCE_KEYS if metadata.get(k)]
    for key, value in (metadata.get("extra") or {}).items():
        if value is not None and key not in RESOURCE_KEYS:
            resources.append((key, value if isinstance(value, str) else json.dumps(value)))
    columns = [(c, str(d)) for c, d in (metadata.get("columns") or {}).items()]

    def write(conn: sqlite3.Connection) -> None:
        for catalog in ("metadata_resources", "metadata_columns"):
            conn.execute(
                f"delete from {catalog} where database_name = ? and resource_name = ?",
                [database, table],
            )
        conn.executemany(
            "insert into metadata_resources (database_name, resource_name, key, value)"
            " values (?, ?, ?, ?)",
            [(database, table, k, v) for k, v in resources],
        )
        conn.executemany(
            "insert into metadata_columns (database_name, resource_name, column_name, key,"
            " value) values (?, ?, ?, 'description', ?)",
            [(database, table, c, d) for c, d in columns],
        )

    await datasette.get_internal_database().execute_write_fn(write)


# -- request parsing ------------------------------------------------------------------


def _database(datasette: Any, request: Any) -> Any | None:
    try:
        return datasette.get_database(route=request.url_vars["database"])
    except KeyError:
        return None


def _write_database(datasette: Any, request: Any) -> Any:
    """The database a write request names, once it is a POST by some actor."""
    if request.method != "POST":
        raise Refused(405, "POST required")
    if request.actor is None:
        raise Refused(403, "Permission denied: a publisher token is required")
    db = _database(datasette, request)
    if db is None:
        raise Refused(404, "Database not found")
    if not db.is_mutable:
        raise Refused(403, "Database is immutable")
    return db


async def _write_request(datasette: Any, request: Any) -> tuple[Any, dict[str, Any]]:
    db = _write_database(datasette, request)
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
    if (
        not isinstance(value, str)
        or not store.TABLE_NAME.match(value)
        or value.lower().startswith("sqlite_")
    ):
        raise Refused(400, f"table must be a plain name (letters, digits, _ and -), got {value!r}")
    return value


def _staging_name(value: Any) -> str:
    if not isinstance(value, str) or not value.startswith(store.STAGE_PREFIX):
        raise Refused(
            400,
            f"staging must name a {store.STAGE_PREFIX}* staging table, got {value!r};"
            " live tables are never loaded",
        )
    return value


def _optional_staging(body: dict[str, Any], key: str) -> str | None:
    value = body.get(key)
    return None if value is None else _staging_name(value)


def _required_str(body: dict[str, Any], key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value:
        raise Refused(400, f"{key} is required (a string)")
    return value


def _str_list(value: Any, key: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise Refused(400, f"{key} must be a list of strings")
    return value


def _columns(value: Any) -> list[tuple[str, str]]:
    if not isinstance(value, list) or not all(
        isinstance(c, list) and len(c) == 2 and all(isinstance(x, str) for x in c) for c in value
    ):
        raise Refused(400, "columns must be a list of [name, type] pairs")
    return [(name, kind) for name, kind in value]


def _indexes(value: Any) -> list[list[str]]:
    if not isinstance(value, list) or not all(
        isinstance(i, list) and i and all(isinstance(c, str) for c in i) for i in value
    ):
        raise Refused(400, "indexes must be a list of non-empty lists of column names")
    return value


def _serial(value: Any) -> int | None:
    if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
        raise Refused(400, "base must be the live version's serial (an integer) or null")
    return value


def _lease_seconds(value: Any) -> int:
    if value is None:
        return DEFAULT_LEASE_S
    if not isinstance(value, int) or isinstance(value, bool) or not 0 < value <= store.MAX_LEASE_S:
        raise Refused(400, f"lease_seconds must be 1..{store.MAX_LEASE_S}")
    return value


def _versions(body: dict[str, Any]) -> tuple[str, str]:
    return _required_str(body, "version"), _required_str(body, "data_version")


def _metadata(body: dict[str, Any]) -> dict[str, Any]:
    metadata = body.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise Refused(400, "metadata must be an object")
    return metadata
