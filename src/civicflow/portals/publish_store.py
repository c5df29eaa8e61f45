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
"""

from __future__ import annotations

import json
import operator
import re
import secrets
import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

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
    conn: sqlite3.Connection,
    table: str,
    staging: str,
    run_id: str,
    columns: list[str],
    rows: list[Any],
) -> dict[str, Any]:
    """Append one batch to this run's staging table and renew its lease; all or nothing."""
    _check_lease(conn, table, staging, run_id)
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
    _renew(conn, staging)
    return {"ok": True, "table": staging, "rows": len(rows)}


def swap(
    conn: sqlite3.Connection,
    table: str,
    staging: str,
    run_id: str,
    expected: int,
    versions: tuple[str, str],
    base: int | None,
    metadata: dict[str, Any],
) -> dict[str, Any]:
    """Make this run's staging table the live table, if nobody published since ``base``."""
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
    conn.execute(f"delete from {STAGING} where name = ?", [staging])
    return {**_record(conn, table, versions, rows, run_id, metadata), "replaced": replaced}


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
) -> dict[str, Any]:
    """Delete by key and write the staged rows into the live table, if nobody published
    since ``base``: one transaction, so readers see the table before or after.

    ``stages`` are this run's staging tables of full rows to upsert and of keys to
    delete (None: nothing of that kind). Deletes go first; a staged row replaces the
    live row with its key (matched by the key columns, so no unique index is needed).
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
    deleted = 0 if deletes is None else _delete_keys(conn, table, deletes, keys)
    upserted = 0
    if upserts is not None:
        _delete_keys(conn, table, upserts, keys)
        names = ", ".join(map(escape_sqlite, columns))
        cursor = conn.execute(
            f"insert into {escape_sqlite(table)} ({names})"
            f" select {names} from {escape_sqlite(upserts)}"
        )
        upserted = cursor.rowcount
    for staging in (s for s in stages if s is not None):
        conn.execute(f"drop table {escape_sqlite(staging)}")
        conn.execute(f"delete from {STAGING} where name = ?", [staging])
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


def _column_names(conn: sqlite3.Connection, table: str) -> list[str]:
    return [r[1] for r in conn.execute(f"pragma table_info({escape_sqlite(table)})")]


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
