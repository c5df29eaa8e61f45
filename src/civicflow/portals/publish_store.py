"""The portal database side of a publish: staging leases, load, compare-and-swap.

Plain ``sqlite3`` functions, each run by the Datasette plugin inside ONE write
transaction (Datasette's ``BEGIN IMMEDIATE`` ... ``COMMIT``), so every check and the
change it guards commit together or not at all.

Concurrency model (two publishes of one table at once):

* every staging table is owned by the run that prepared it, under a lease that each
  loaded batch renews; ``prepare`` reclaims only staging tables whose lease expired
  (their run died), never a live run's;
* each published version has a serial (its row id in the version table); a run names
  the serial it started from (``base``) and ``prepare``, ``swap`` and ``relabel``
  refuse with a :class:`Conflict` naming the other run if the live serial moved.

Rows arrive as Arrow record batches (the plugin reads them from the request body) and
go in with one ``executemany`` per batch, fed column by column: each column becomes a
Python list in one call and ``zip`` makes the rows, a slice of ``CONVERT_ROWS`` at a
time, so no per-row Arrow call and at most one slice of Python objects alive.

Indexes a publish asks for (the fields a spec marks for filtering and facets) are
built inside the swap's transaction, after the new table took the live name: readers
see the old indexed table or the new indexed one, never a table without its indexes.
"""

from __future__ import annotations

import json
import re
import secrets
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa
from datasette.utils import escape_sqlite

VERSIONS = "_civicflow_versions"
STAGING = "_civicflow_staging"
METADATA = "_civicflow_metadata"
STAGE_PREFIX = "_civicflow_stage_"
OLD_PREFIX = "_civicflow_old_"
#: tables no reader may query: rows not (yet) published. The lease registry
#: (_civicflow_staging: run ids and lease times, like the public version history) is
#: readable, which also spares the portal log an error per database page view.
PRIVATE_PREFIXES = (STAGE_PREFIX, OLD_PREFIX)
# Published names are plain identifiers; leading "_" is reserved for hidden tables.
TABLE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]*$")
#: column types a staging table may declare, and the SQLite type each becomes
COLUMN_TYPES = {"integer": "INTEGER", "float": "REAL", "text": "TEXT"}
MAX_LEASE_S = 3600
#: Arrow types each staging column type takes (the client sends exactly these)
ARROW_TYPES: dict[str, tuple[Callable[[pa.DataType], bool], ...]] = {
    "INTEGER": (pa.types.is_integer, pa.types.is_null),
    "REAL": (pa.types.is_floating, pa.types.is_integer, pa.types.is_null),
    "TEXT": (pa.types.is_string, pa.types.is_large_string, pa.types.is_null),
}
#: rows converted to Python objects at once while a batch is stored
CONVERT_ROWS = 10_000
#: page cache (KiB) while a batch is stored or indexes are built; the connection's
#: own size is restored afterwards, so it bounds the portal's memory
LOAD_CACHE_KIB = 64 * 1024
#: name prefix of the indexes civicflow builds (idx_<table>_<columns>)
INDEX_PREFIX = "idx_"
#: helper threads SQLite may sort with while it builds an index
SORT_THREADS = 2

SCHEMA = (
    f"""create table if not exists {VERSIONS} (
        id integer primary key,
        table_name text not null,
        version text not null,
        rows integer not null,
        run_id text,
        published_at text not null,
        data_version text)""",
    f"create index if not exists {VERSIONS}_table on {VERSIONS} (table_name, id)",
    f"""create table if not exists {STAGING} (
        name text primary key,
        table_name text not null,
        run_id text,
        created_at text not null,
        lease_seconds integer not null default 300,
        lease_expires_at text not null default '')""",
    f"create table if not exists {METADATA} (table_name text primary key, metadata text not null)",
)
#: columns added since the first release; portal databases made before get them on start
MIGRATIONS = {
    VERSIONS: {"data_version": "text"},
    STAGING: {
        "lease_seconds": "integer not null default 300",
        "lease_expires_at": "text not null default ''",
    },
}


class Refused(Exception):
    """A publish request that must not go ahead; becomes an HTTP error response."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class Conflict(Refused):
    """The live version moved since the run began; names the run that moved it."""

    def __init__(self, message: str, live: dict[str, Any]) -> None:
        super().__init__(409, message)
        self.live = live


def is_private(table: str) -> bool:
    return table.startswith(PRIVATE_PREFIXES)


def ensure_schema(conn: sqlite3.Connection) -> None:
    for statement in SCHEMA:
        conn.execute(statement)
    for table, columns in MIGRATIONS.items():
        have = {r[1] for r in conn.execute(f"pragma table_info({table})")}
        for name, decl in columns.items():
            if name not in have:
                conn.execute(f"alter table {table} add column {name} {decl}")


def live_version(conn: sqlite3.Connection, table: str) -> dict[str, Any] | None:
    """The newest version record of ``table`` (None if never published or dropped)."""
    if not exists(conn, table):
        return None
    row = conn.execute(
        f"select id, version, rows, run_id, published_at, data_version from {VERSIONS}"
        " where table_name = ? order by id desc limit 1",
        [table],
    ).fetchone()
    if row is None:
        return None
    keys = ("serial", "version", "rows", "run_id", "published_at", "data_version")
    return {"table": table, **dict(zip(keys, tuple(row), strict=True))}


# -- the steps of a publish --------------------------------------------------------------


def prepare(
    conn: sqlite3.Connection,
    table: str,
    run_id: str,
    columns: Sequence[tuple[str, str]],
    primary_key: Sequence[str],
    base: int | None,
    lease_seconds: int,
) -> dict[str, Any]:
    """Reclaim expired staging tables of ``table``, create this run's, lease it."""
    ensure_schema(conn)
    check_base(conn, table, base, run_id)
    now = _now()
    drop_old(conn, table)  # left by a portal stopped between a swap and its clean-up
    reclaimed = _reclaim_expired(conn, table, now)
    others = [
        {"run_id": r[0], "lease_expires_at": r[1]}
        for r in conn.execute(
            f"select run_id, lease_expires_at from {STAGING} where table_name = ?", [table]
        )
    ]
    staging = f"{STAGE_PREFIX}{table}_{secrets.token_hex(6)}"
    conn.execute(_create_sql(staging, columns, primary_key))
    conn.execute(
        f"insert into {STAGING} (name, table_name, run_id, created_at, lease_seconds,"
        " lease_expires_at) values (?, ?, ?, ?, ?, ?)",
        [staging, table, run_id, _iso(now), lease_seconds, _iso(now + _s(lease_seconds))],
    )
    return {"ok": True, "staging": staging, "reclaimed": reclaimed, "concurrent": others}


def load(
    conn: sqlite3.Connection, table: str, staging: str, run_id: str, data: pa.Table
) -> dict[str, Any]:
    """Append one batch to this run's staging table and renew its lease; all or nothing.

    ``data``'s columns are named after staging columns (any subset, any order) and
    typed as they are declared: integers for INTEGER, floats or integers for REAL,
    strings for TEXT (null-only columns fit all).
    """
    _check_lease(conn, table, staging, run_id)
    declared = {r[1]: str(r[2]).upper() for r in conn.execute(_pragma_info(staging))}
    columns = data.column_names
    if not columns or len(set(columns)) != len(columns):
        raise Refused(400, "the batch must name distinct columns")
    unknown = [c for c in columns if c not in declared]
    if unknown:
        raise Refused(400, f"{staging} has no column(s) {', '.join(map(repr, unknown))}")
    mistyped = [
        f"{name} ({kind} cannot go in a {declared[name]} column)"
        for name, kind in zip(columns, data.schema.types, strict=True)
        if not any(accepts(kind) for accepts in ARROW_TYPES.get(declared[name], ()))
    ]
    if mistyped:
        raise Refused(400, f"batch not stored: wrong column types: {', '.join(mistyped)}")
    sql = (
        f"insert into {escape_sqlite(staging)} ({', '.join(map(escape_sqlite, columns))})"
        f" values ({', '.join('?' * len(columns))})"
    )
    fed = [0]
    try:
        with load_pragmas(conn):
            conn.executemany(sql, _rows(data, fed))
    except (
        sqlite3.IntegrityError,
        sqlite3.ProgrammingError,
        sqlite3.InterfaceError,
        OverflowError,
    ) as exc:
        # executemany stops at the row it could not store: the last one fed to it.
        raise Refused(
            400, f"{exc} (row {fed[0] - 1} of this batch of {data.num_rows}; batch not stored)"
        ) from exc
    _renew(conn, staging)
    return {"ok": True, "table": staging, "rows": data.num_rows}


def _rows(data: pa.Table, fed: list[int]) -> Iterator[tuple[Any, ...]]:
    """The rows of ``data`` as tuples, converted a column (of one slice) at a time."""
    for batch in data.to_batches(max_chunksize=CONVERT_ROWS):
        for row in zip(*(column.to_pylist() for column in batch.columns), strict=True):
            fed[0] += 1
            yield row


@contextmanager
def load_pragmas(conn: sqlite3.Connection, *, sort_threads: int = 0) -> Iterator[None]:
    """A larger page cache (B-tree and sorter pages) while bulk rows go in or indexes
    are built, and helper threads for the sorts of an index build."""
    (cache,) = conn.execute("pragma cache_size").fetchone()
    (threads,) = conn.execute("pragma threads").fetchone()
    conn.execute(f"pragma cache_size = -{LOAD_CACHE_KIB}")
    conn.execute(f"pragma threads = {sort_threads}")
    try:
        yield
    finally:
        conn.execute(f"pragma cache_size = {int(cache)}")
        conn.execute(f"pragma threads = {int(threads)}")


def swap(
    conn: sqlite3.Connection,
    table: str,
    staging: str,
    run_id: str,
    expected: int,
    versions: tuple[str, str],
    base: int | None,
    metadata: dict[str, Any],
    indexes: Sequence[Sequence[str]] = (),
) -> dict[str, Any]:
    """Make this run's staging table the live table, if nobody published since ``base``,
    with ``indexes`` (column lists) built before the transaction commits."""
    ensure_schema(conn)
    _check_lease(conn, table, staging, run_id)
    check_base(conn, table, base, run_id)
    rows = conn.execute(f"select count(*) from {escape_sqlite(staging)}").fetchone()[0]
    if rows != expected:
        raise Refused(
            409,
            f"staging table holds {rows} rows, expected {expected}; the live table is unchanged",
        )
    replaced = exists(conn, table)
    old = f"{OLD_PREFIX}{table}_{secrets.token_hex(6)}"
    # Legacy renames leave views and triggers naming the live table alone, so they
    # follow the new table instead of the old one.
    conn.execute("PRAGMA legacy_alter_table = ON")
    try:
        if replaced:
            conn.execute(f"alter table {escape_sqlite(table)} rename to {escape_sqlite(old)}")
        conn.execute(f"alter table {escape_sqlite(staging)} rename to {escape_sqlite(table)}")
    finally:
        conn.execute("PRAGMA legacy_alter_table = OFF")
    if replaced:
        # The old rows stay, private, until drop_old (after this commits: dropping a
        # million rows takes seconds); their indexes go now, freeing the names.
        for name, _ in _made_indexes(conn, old):
            conn.execute(f"drop index {escape_sqlite(name)}")
    # The new table gets its indexes in this transaction: no reader ever sees it without.
    sync_indexes(conn, table, indexes)
    conn.execute(f"delete from {STAGING} where name = ?", [staging])
    record = _record(conn, table, versions, rows, run_id, metadata)
    return {**record, "replaced": replaced, "old_table": old if replaced else None}


def drop_old(conn: sqlite3.Connection, table: str) -> list[str]:
    """Drop the replaced versions of ``table`` that a swap left behind (after its
    commit, or a crash right after it); returns their names."""
    pattern = re.compile(rf"^{re.escape(OLD_PREFIX + table)}_[0-9a-f]{{12}}$")
    names = [
        str(r[0])
        for r in conn.execute(
            "select name from sqlite_master where type = 'table' and substr(name, 1, ?) = ?",
            [len(OLD_PREFIX), OLD_PREFIX],
        )
        if pattern.match(str(r[0]))
    ]
    for name in names:
        conn.execute(f"drop table {escape_sqlite(name)}")
    return names


def relabel(
    conn: sqlite3.Connection,
    table: str,
    run_id: str,
    versions: tuple[str, str],
    base: int | None,
    metadata: dict[str, Any],
) -> dict[str, Any]:
    """A new version with the live rows and new metadata (a title or description edit)."""
    ensure_schema(conn)
    live = check_base(conn, table, base, run_id)
    if live is None or live["data_version"] != versions[1]:
        raise Refused(409, f"{table}: the live rows are not data version {versions[1][:12]}…")
    return {**_record(conn, table, versions, live["rows"], run_id, metadata), "replaced": False}


def apply_changes(
    conn: sqlite3.Connection,
    table: str,
    run_id: str,
    stages: tuple[str | None, str | None],
    primary_key: Sequence[str],
    versions: tuple[str, str],
    base: int | None,
    metadata: dict[str, Any],
    indexes: Sequence[Sequence[str]] | None = None,
) -> dict[str, Any]:
    """Delete by key and write the staged rows into the live table, if nobody published
    since ``base``: one transaction, so readers see the table before or after.
    ``indexes`` (column lists; None: leave them) are made to match in the same one.

    ``stages`` are this run's staging tables of full rows to upsert and of keys to
    delete (None: nothing of that kind). Deletes go first; then a staged row whose key
    is live updates that row in place (its rowid, so its place in the storage order,
    stays) and the others are appended in staged order. Rows are matched by the key
    columns, so no unique index is needed. A key both deleted and upserted moves its
    row to the end; it counts as upserted, not deleted.
    """
    ensure_schema(conn)
    upserts, deletes = stages
    for staging in (s for s in stages if s is not None):
        _check_lease(conn, table, staging, run_id)
    live = check_base(conn, table, base, run_id)
    if live is None:
        raise Refused(404, f"{table} has no published version: publish it in full first")
    columns = _column_names(conn, table)
    keys = list(primary_key)
    if not keys or any(k not in columns for k in keys):
        raise Refused(400, f"primary key {keys} must name columns of the live table {table}")
    if upserts is not None and _column_names(conn, upserts) != columns:
        raise Refused(
            409, f"{table}: the upserted columns differ from the live table's; publish in full"
        )
    if deletes is not None and _column_names(conn, deletes) != keys:
        raise Refused(400, f"the delete staging table must hold the key columns {keys} only")
    deleted = 0
    if deletes is not None:
        moved = 0 if upserts is None else _count_live(conn, table, (deletes, upserts), keys)
        deleted = _delete_keys(conn, table, deletes, keys) - moved
    upserted = 0
    if upserts is not None:
        upserted = _update_in_place(conn, table, upserts, columns, keys)
        upserted += _append_new(conn, table, upserts, columns, keys)
    for staging in (s for s in stages if s is not None):
        conn.execute(f"drop table {escape_sqlite(staging)}")
        conn.execute(f"delete from {STAGING} where name = ?", [staging])
    if indexes is not None:
        sync_indexes(conn, table, indexes)
    rows = conn.execute(f"select count(*) from {escape_sqlite(table)}").fetchone()[0]
    record = _record(conn, table, versions, rows, run_id, metadata)
    return {**record, "replaced": False, "upserted": upserted, "deleted": deleted}


def _delete_keys(conn: sqlite3.Connection, table: str, staging: str, keys: list[str]) -> int:
    """Delete the live rows whose key is in ``staging``; the live key index finds them."""
    key = ", ".join(map(escape_sqlite, keys))
    cursor = conn.execute(
        f"delete from {escape_sqlite(table)} where ({key}) in"
        f" (select {key} from {escape_sqlite(staging)})"
    )
    return int(cursor.rowcount)


def _count_live(
    conn: sqlite3.Connection, table: str, stagings: Sequence[str], keys: list[str]
) -> int:
    """How many live rows have a key that is in every one of ``stagings``."""
    key = ", ".join(map(escape_sqlite, keys))
    ins = " and ".join(f"({key}) in (select {key} from {escape_sqlite(s)})" for s in stagings)
    return int(
        conn.execute(f"select count(*) from {escape_sqlite(table)} where {ins}").fetchone()[0]
    )


def _matches(keys: list[str]) -> str:
    return " and ".join(f"live.{k} = staged.{k}" for k in map(escape_sqlite, keys))


def _update_in_place(
    conn: sqlite3.Connection, table: str, staging: str, columns: list[str], keys: list[str]
) -> int:
    """Overwrite the live rows whose key is staged with the staged values, rowids kept:
    one UPDATE ... FROM (SQLite 3.33+), each staged row finding its live row by the key
    index."""
    values = [c for c in columns if c not in keys]
    if not values:  # only key columns: a live key already holds the staged row
        return _count_live(conn, table, [staging], keys)
    targets = ", ".join(map(escape_sqlite, values))
    sources = ", ".join(f"staged.{escape_sqlite(c)}" for c in values)
    cursor = conn.execute(
        f"update {escape_sqlite(table)} as live set ({targets}) = ({sources})"
        f" from {escape_sqlite(staging)} as staged where {_matches(keys)}"
    )
    return int(cursor.rowcount)


def _append_new(
    conn: sqlite3.Connection, table: str, staging: str, columns: list[str], keys: list[str]
) -> int:
    """Insert the staged rows whose key is not live, in staged (rowid) order: new rowids,
    so they go after every live row."""
    names = ", ".join(map(escape_sqlite, columns))
    # a column may take the name rowid; SQLite has two other names for it
    rowid = next(n for n in ("rowid", "_rowid_", "oid") if n not in columns)
    cursor = conn.execute(
        f"insert into {escape_sqlite(table)} ({names})"
        f" select {names} from {escape_sqlite(staging)} as staged"
        f" where not exists (select 1 from {escape_sqlite(table)} as live where {_matches(keys)})"
        f" order by staged.{rowid}"
    )
    return int(cursor.rowcount)


def _column_names(conn: sqlite3.Connection, table: str) -> list[str]:
    return [r[1] for r in conn.execute(f"pragma table_info({escape_sqlite(table)})")]


def reindex(
    conn: sqlite3.Connection, table: str, indexes: Sequence[Sequence[str]]
) -> dict[str, Any]:
    """Make the live table's indexes ``indexes`` (a spec marked other fields since the
    live version was published); rows and version are untouched."""
    ensure_schema(conn)
    if live_version(conn, table) is None:
        raise Refused(404, f"{table} has no published version")
    changed = sync_indexes(conn, table, indexes)
    return {"ok": True, "table": table, "indexes": table_indexes(conn, table), **changed}


def table_indexes(conn: sqlite3.Connection, table: str) -> list[list[str]]:
    """The column lists of the indexes civicflow built on ``table``, in name order."""
    return [columns for _, columns in _made_indexes(conn, table)]


def _made_indexes(conn: sqlite3.Connection, table: str) -> list[tuple[str, list[str]]]:
    # origin 'c': made by CREATE INDEX (not a primary key or unique constraint's own)
    made = sorted(
        str(r[1]) for r in conn.execute(f"pragma index_list({escape_sqlite(table)})") if r[3] == "c"
    )
    return [
        (name, [str(r[2]) for r in conn.execute(f"pragma index_info({escape_sqlite(name)})")])
        for name in made
    ]


def sync_indexes(
    conn: sqlite3.Connection, table: str, indexes: Sequence[Sequence[str]]
) -> dict[str, list[list[str]]]:
    """Build the missing ``indexes`` on ``table`` and drop the ones no longer asked for,
    in the caller's transaction; then refresh the planner's statistics for the table."""
    wanted = _check_indexes(conn, table, indexes)
    have = _made_indexes(conn, table)
    dropped = [cols for name, cols in have if cols not in wanted]
    for name, cols in have:
        if cols not in wanted:
            conn.execute(f"drop index {escape_sqlite(name)}")
    existing = [cols for _, cols in have]
    # Index names are one namespace for the whole database.
    taken = {str(r[0]) for r in conn.execute("select name from sqlite_master where type = 'index'")}
    created = []
    with load_pragmas(conn, sort_threads=SORT_THREADS):
        for cols in wanted:
            if cols in existing:
                continue
            name = _index_name(table, cols, taken)
            taken.add(name)
            conn.execute(
                f"create index {escape_sqlite(name)} on {escape_sqlite(table)}"
                f" ({', '.join(map(escape_sqlite, cols))})"
            )
            created.append(cols)
        if created or dropped:
            # Statistics let the planner choose between indexes; a sample is enough.
            conn.execute("pragma analysis_limit = 1000")
            conn.execute(f"analyze {escape_sqlite(table)}")
    return {"created": created, "dropped": dropped}


def _check_indexes(
    conn: sqlite3.Connection, table: str, indexes: Sequence[Sequence[str]]
) -> list[list[str]]:
    columns = set(_column_names(conn, table))
    wanted: list[list[str]] = []
    for index in indexes:
        cols = list(index)
        if not cols or len(set(cols)) != len(cols) or any(c not in columns for c in cols):
            raise Refused(
                400, f"index {cols} must name distinct columns of {table}; nothing changed"
            )
        if cols not in wanted:
            wanted.append(cols)
    return wanted


def _index_name(table: str, columns: list[str], taken: set[str]) -> str:
    name = f"{INDEX_PREFIX}{table}_{'_'.join(columns)}"
    candidate, n = name, 1
    while candidate in taken:
        n += 1
        candidate = f"{name}_{n}"
    return candidate


def discard(conn: sqlite3.Connection, table: str, staging: str, run_id: str) -> dict[str, Any]:
    """Drop a staging table its own run gave up on (other runs' tables are refused)."""
    owner = _lease(conn, staging)
    if owner is None:
        return {"ok": True, "dropped": False}
    if owner[0] != table or owner[1] != run_id:
        raise Refused(403, f"{staging} belongs to run {owner[1]} of {owner[0]}, not to this run")
    conn.execute(f"drop table if exists {escape_sqlite(staging)}")
    conn.execute(f"delete from {STAGING} where name = ?", [staging])
    return {"ok": True, "dropped": True}


def staging_status(conn: sqlite3.Connection, table: str) -> list[dict[str, Any]]:
    """This table's staging tables with their run, lease and rows (for the publisher)."""
    if not exists(conn, STAGING):
        return []
    now = _iso(_now())
    out = []
    for name, run_id, created, expires in conn.execute(
        f"select name, run_id, created_at, lease_expires_at from {STAGING}"
        " where table_name = ? order by created_at",
        [table],
    ).fetchall():
        rows = (
            conn.execute(f"select count(*) from {escape_sqlite(name)}").fetchone()[0]
            if exists(conn, name)
            else None
        )
        out.append(
            {
                "staging": name,
                "run_id": run_id,
                "created_at": created,
                "lease_expires_at": expires,
                "expired": expires <= now,
                "rows": rows,
            }
        )
    return out


# -- checks ------------------------------------------------------------------------------


def check_base(
    conn: sqlite3.Connection, table: str, base: int | None, run_id: str
) -> dict[str, Any] | None:
    """The live version, if it is still the one this run started from; else Conflict."""
    live = live_version(conn, table)
    serial = None if live is None else live["serial"]
    if serial != base:
        if live is None:
            raise Conflict(
                f"{table}: the live table this run started from is gone; run {run_id} "
                "refused, nothing changed",
                {},
            )
        raise Conflict(
            f"{table}: the live version changed since run {run_id} began: run "
            f"{live['run_id']} published version {str(live['version'])[:12]}… at "
            f"{live['published_at']}; run {run_id} refused, the live table is unchanged",
            live,
        )
    return live


def _check_lease(conn: sqlite3.Connection, table: str, staging: str, run_id: str) -> None:
    owner = _lease(conn, staging)
    if owner is None or not exists(conn, staging):
        raise Refused(
            409,
            f"{staging} is no longer a staging table of {table} (its lease expired and "
            "another publish reclaimed it, or it was published or discarded); nothing "
            "written, the live table is unchanged",
        )
    if owner[0] != table or owner[1] != run_id:
        raise Refused(
            403, f"{staging} belongs to run {owner[1]} of {owner[0]}; run {run_id} may not use it"
        )


def _lease(conn: sqlite3.Connection, staging: str) -> tuple[str, str] | None:
    if not exists(conn, STAGING):
        return None
    row = conn.execute(
        f"select table_name, run_id from {STAGING} where name = ?", [staging]
    ).fetchone()
    return None if row is None else (str(row[0]), str(row[1]))


def _renew(conn: sqlite3.Connection, staging: str) -> None:
    (seconds,) = conn.execute(
        f"select lease_seconds from {STAGING} where name = ?", [staging]
    ).fetchone()
    conn.execute(
        f"update {STAGING} set lease_expires_at = ? where name = ?",
        [_iso(_now() + _s(seconds)), staging],
    )


def _reclaim_expired(conn: sqlite3.Connection, table: str, now: datetime) -> list[dict[str, str]]:
    """Drop staging tables of ``table`` whose lease ended: their runs are gone."""
    expired = conn.execute(
        f"select name, run_id, lease_expires_at from {STAGING}"
        " where table_name = ? and lease_expires_at <= ?",
        [table, _iso(now)],
    ).fetchall()
    for name, _, _ in expired:
        conn.execute(f"drop table if exists {escape_sqlite(name)}")
        conn.execute(f"delete from {STAGING} where name = ?", [name])
    return [{"staging": n, "run_id": r, "lease_expired_at": e} for n, r, e in expired]


def _record(
    conn: sqlite3.Connection,
    table: str,
    versions: tuple[str, str],
    rows: int,
    run_id: str,
    metadata: dict[str, Any],
) -> dict[str, Any]:
    """The version row and the stored metadata, in the caller's transaction."""
    version, data_version = versions
    published_at = _iso(_now())
    cursor = conn.execute(
        f"insert into {VERSIONS} (table_name, version, rows, run_id, published_at, data_version)"
        " values (?, ?, ?, ?, ?, ?)",
        [table, version, rows, run_id, published_at, data_version],
    )
    conn.execute(
        f"insert into {METADATA} (table_name, metadata) values (?, ?)"
        " on conflict (table_name) do update set metadata = excluded.metadata",
        [table, json.dumps(metadata)],
    )
    return {
        "ok": True,
        "table": table,
        "serial": cursor.lastrowid,
        "version": version,
        "data_version": data_version,
        "rows": rows,
        "run_id": run_id,
        "published_at": published_at,
    }


def _create_sql(
    staging: str, columns: Sequence[tuple[str, str]], primary_key: Sequence[str]
) -> str:
    names = [name for name, _ in columns]
    if not names or len(set(names)) != len(names):
        raise Refused(400, "columns must be a non-empty list of distinct names")
    bad = [f"{n}: {t}" for n, t in columns if t not in COLUMN_TYPES]
    if bad:
        raise Refused(400, f"column types must be {sorted(COLUMN_TYPES)}, got {', '.join(bad)}")
    unknown = [k for k in primary_key if k not in names]
    if unknown:
        raise Refused(400, f"primary key names unknown column(s) {', '.join(unknown)}")
    parts = [f"{escape_sqlite(n)} {COLUMN_TYPES[t]}" for n, t in columns]
    if primary_key:
        parts.append(f"primary key ({', '.join(map(escape_sqlite, primary_key))})")
    return f"create table {escape_sqlite(staging)} ({', '.join(parts)})"


def _pragma_info(table: str) -> str:
    return f"pragma table_info({escape_sqlite(table)})"


def exists(conn: sqlite3.Connection, table: str) -> bool:
    row = conn.execute(
        "select 1 from sqlite_master where type = 'table' and name = ?", [table]
    ).fetchone()
    return row is not None


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(moment: datetime) -> str:
    # Microseconds: two publishes within one second still order correctly.
    return moment.isoformat(timespec="microseconds")


def _s(seconds: int) -> timedelta:
    return timedelta(seconds=seconds)
