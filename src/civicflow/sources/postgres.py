"""A table or query in a department's PostgreSQL database, streamed as CSV with psycopg 3.

The rows come out of ``COPY (SELECT ...) TO STDOUT WITH (FORMAT csv, HEADER true)``, so
the server writes the CSV and Python only passes bytes on, in chunks of about 1 MiB: a
table is never held in memory, and the raw copy is exactly what the server sent. The
extract runs in a read-only transaction (a query that writes is refused by the server)
with ``source.statement_timeout_s`` as its statement timeout.

Rows are ordered by the incremental cursor and the primary key when the spec has them,
so an unchanged table gives the same bytes (and content hash) run after run. With a
``since`` watermark only rows whose cursor column is greater are pulled; an empty result
then means nothing changed (``SourceUnchanged``).

Text forms: the session's time zone is UTC, so ``timestamptz`` values arrive as
``2024-05-01 13:45:00+00``; reading strips that ``+00`` (and fractional seconds, as
the shared casting works in whole seconds), so they read as UTC wall time. Any other
offset is left alone and reported as a type error. Booleans arrive as ``t``/``f`` and
read as ``true``/``false``. NULL and the empty string are both empty in the CSV (the
empty string quoted); like any CSV source, ``null_values`` decides what is null.

The connection: a libpq URL or keyword string from the variable ``source.connection_env``
names (it must not contain a password) and the password from ``source.password_env``.
Errors name those variables, never their values; the server's own message (which can
quote data) goes to the private run report only.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pyarrow as pa
import pyarrow.compute as pc
from psycopg import errors, sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from civicflow.settings import Settings
from civicflow.sources.base import ExtractError, SourceUnchanged, register_source
from civicflow.sources.csv import CsvReader
from civicflow.spec.models import CsvSource, DatasetSpec, PostgresSource

log = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 20
PROGRESS_BYTES = 64 << 20
CONNECT_TIMEOUT_S = 15
# Session settings that fix the text forms the reader expects, whatever the server's defaults.
SESSION = {"TimeZone": "UTC", "DateStyle": "ISO, YMD", "IntervalStyle": "postgres"}
_PG_TIMESTAMP = r"^(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2})(\.\d+)?(\+00(:00)?)?$"


def describe(source: PostgresSource) -> str:
    """How errors name the source: the spec's table (public) and the variable, no value."""
    what = f"table {source.table}" if source.table else "source.query"
    return f"PostgreSQL {what} (connection from {source.connection_env})"


# -- the connection ---------------------------------------------------------------------


def connection_info(source: PostgresSource, settings: Settings) -> str:
    """The libpq settings from the environment; refuses a missing variable or a password in it."""
    conninfo = settings.env.get(source.connection_env, "").strip()
    if not conninfo:
        raise ExtractError(
            f"{describe(source)}: {source.connection_env} is not set (a libpq URL such as "
            "postgresql://user@host:5432/dbname, without the password)"
        )
    try:
        params = conninfo_to_dict(conninfo)
    except psycopg.ProgrammingError:
        # psycopg's message quotes the string, which may hold a password: nothing of it kept.
        raise ExtractError(
            f"{describe(source)}: {source.connection_env} is not a libpq URL or key=value string"
        ) from None
    if params.get("password"):
        raise ExtractError(
            f"{describe(source)}: {source.connection_env} contains a password; remove it and "
            f"put the password in {source.password_env}"
        )
    params.setdefault("connect_timeout", str(CONNECT_TIMEOUT_S))
    params.setdefault("application_name", "civicflow")
    return make_conninfo("", **params)


def connection_refused(
    source: PostgresSource, exc: psycopg.Error, has_password: bool
) -> ExtractError:
    """The error for a failed connection, naming the variable to fix (libpq's words private)."""
    text = str(exc)
    if "password" in text or "authentication" in text:
        unset = "" if has_password else f" ({source.password_env} is not set)"
        hint = (
            f"authentication failed: check the user in {source.connection_env} and the "
            f"password in {source.password_env}{unset}"
        )
    elif "does not exist" in text:
        hint = f"the database or role named in {source.connection_env} does not exist"
    else:
        hint = f"cannot reach the server named in {source.connection_env} (refused, unreachable or timed out)"
    return ExtractError(f"{describe(source)}: {hint}", detail=f"{type(exc).__name__}: {text}")


def connect(source: PostgresSource, settings: Settings) -> psycopg.Connection:
    """A connection whose transactions are read-only."""
    conninfo = connection_info(source, settings)
    password = settings.secret(source.password_env)
    try:
        conn = psycopg.connect(conninfo, password=password)
    except psycopg.Error as exc:
        raise connection_refused(source, exc, password is not None) from None
    conn.read_only = True
    return conn


# -- the statement --------------------------------------------------------------------


def order_columns(spec: DatasetSpec) -> list[str]:
    """Source columns the rows are sorted by: the cursor, then the primary key."""
    names = ([spec.incremental.cursor] if spec.incremental else []) + list(spec.primary_key)
    return list(dict.fromkeys(spec.field(n).source_name for n in names))


def watermark(spec: DatasetSpec, since: str) -> sql.Literal:
    """``since`` as a literal: a number for an integer cursor, otherwise untyped text that
    the server reads as the column's own type (dates and timestamps, in the UTC session)."""
    assert spec.incremental is not None
    kind = spec.field(spec.incremental.cursor).type
    if kind == "integer" and since.lstrip("-").isdigit():
        return sql.Literal(int(since))
    return sql.Literal(since)


def select(spec: DatasetSpec, since: str | None) -> sql.Composable:
    """The SELECT whose rows are the raw copy (filtered by ``since``, in a stable order)."""
    source = spec.source
    assert isinstance(source, PostgresSource)
    if source.table:
        base: sql.Composable = sql.SQL("SELECT * FROM {}").format(
            sql.Identifier(*source.table.split("."))
        )
    else:
        # The steward's SELECT, verbatim; never .format()ed (it may hold braces).
        base = sql.SQL(source.query.strip().rstrip(";").rstrip() if source.query else "")
    order = order_columns(spec)
    if since is None and not order:
        return base
    # "\n)" here and in copy_statement: the steward's query may end in a -- comment.
    parts: list[sql.Composable] = [
        sql.SQL("SELECT * FROM ("),
        base,
        sql.SQL("\n) AS civicflow_src"),
    ]
    if since is not None and spec.incremental is not None:
        cursor = spec.field(spec.incremental.cursor).source_name
        parts.append(
            sql.SQL(" WHERE {} > {}").format(sql.Identifier(cursor), watermark(spec, since))
        )
    if order:
        parts.append(sql.SQL(" ORDER BY {}").format(sql.SQL(", ").join(map(sql.Identifier, order))))
    return sql.Composed(parts)


def copy_statement(spec: DatasetSpec, since: str | None) -> sql.Composed:
    return sql.Composed(
        [
            sql.SQL("COPY ("),
            select(spec, since),
            sql.SQL("\n) TO STDOUT WITH (FORMAT csv, HEADER true)"),
        ]
    )


def prepare_session(cursor: psycopg.Cursor, source: PostgresSource) -> None:
    """Statement timeout and text forms, for this transaction only (``is_local``)."""
    settings = {**SESSION, "statement_timeout": f"{source.statement_timeout_s * 1000}"}
    for name, value in settings.items():
        cursor.execute("SELECT set_config(%s, %s, true)", [name, value])


# -- errors while reading -------------------------------------------------------------


def _hint(spec: DatasetSpec, source: PostgresSource, exc: psycopg.Error) -> str:
    if isinstance(exc, errors.QueryCanceled):
        return (
            f"cancelled on the server: longer than source.statement_timeout_s "
            f"({source.statement_timeout_s} s), or cancelled by an administrator"
        )
    if isinstance(exc, errors.ReadOnlySqlTransaction):
        return (
            "the query tried to write; the extract runs read-only, so source.query must only read"
        )
    if isinstance(exc, errors.UndefinedTable):
        return "table or view not found: check source.table or source.query"
    if isinstance(exc, errors.UndefinedColumn):
        cursor = f" and incremental.cursor ({spec.incremental.cursor})" if spec.incremental else ""
        return f"column not found: check source.query{cursor}"
    if isinstance(exc, errors.InsufficientPrivilege):
        return (
            f"permission denied: the role in {source.connection_env} needs SELECT on what is read"
        )
    if isinstance(exc, errors.SyntaxError):
        return "the query does not parse: check source.query"
    if isinstance(exc, psycopg.OperationalError):
        return "the connection was lost during the extract (server stopped or backend terminated)"
    return f"server error {exc.sqlstate or type(exc).__name__}"


def read_failed(spec: DatasetSpec, exc: psycopg.Error) -> ExtractError:
    source = spec.source
    assert isinstance(source, PostgresSource)
    return ExtractError(
        f"{describe(source)}: {_hint(spec, source, exc)} (the server's message is in the run report)",
        detail=f"{type(exc).__name__} [{exc.sqlstate}]: {exc}",
    )


# -- streaming ------------------------------------------------------------------------


class Progress:
    """INFO lines every PROGRESS_BYTES: MB so far, rows (newlines, so quoted ones too), rate."""

    def __init__(self, what: str):
        self.what, self.started = what, time.monotonic()
        self.bytes = self.lines = 0
        self.next_report = PROGRESS_BYTES
        #: rows COPY reported once it finished (None while it runs)
        self.rows: int | None = None

    def add(self, chunk: bytes | bytearray) -> None:
        self.bytes += len(chunk)
        self.lines += chunk.count(b"\n")
        if self.bytes >= self.next_report:
            self.next_report += PROGRESS_BYTES
            self.report("streaming")

    def report(self, state: str, rows: int | None = None) -> None:
        seconds = max(time.monotonic() - self.started, 1e-6)
        rows = rows if rows is not None else max(self.lines - 1, 0)
        log.info(
            "%s: %s, %s rows, %.0f MB in %.1f s (%s rows/s)",
            self.what, state, f"{rows:,}", self.bytes / 1e6, seconds, f"{rows / seconds:,.0f}",
        )  # fmt: skip


def stream(cursor: psycopg.Cursor, statement: sql.Composed, progress: Progress) -> Iterator[bytes]:
    """COPY's rows gathered into ~1 MiB chunks (psycopg hands them over one by one)."""
    buffer = bytearray()
    with cursor.copy(statement) as copy:
        for data in copy:
            buffer += data
            if len(buffer) >= CHUNK_BYTES:
                progress.add(buffer)
                yield bytes(buffer)
                buffer.clear()
    progress.rows = cursor.rowcount
    if buffer:
        progress.add(buffer)
        yield bytes(buffer)


def pull_csv(spec: DatasetSpec, settings: Settings, since: str | None = None) -> Iterator[bytes]:
    """The raw copy's bytes: the server's CSV with its header row, in order."""
    source = spec.source
    assert isinstance(source, PostgresSource)
    statement = copy_statement(spec, since)
    progress = Progress(describe(source))
    try:
        with connect(source, settings) as conn, conn.cursor() as cursor:
            prepare_session(cursor, source)
            chunks = stream(cursor, statement, progress)
            first = next(chunks, b"")
            # Under 1 MiB the COPY has finished by now; no rows past the watermark means
            # nothing changed (not an empty raw copy that fails reading).
            if since is not None and progress.rows == 0:
                raise SourceUnchanged(f"{describe(source)}: no rows changed since {since}")
            yield first
            yield from chunks
            progress.report("done", progress.rows)
    except psycopg.Error as exc:
        raise read_failed(spec, exc) from None


# -- reading the raw copy --------------------------------------------------------------


def _longest(values: pa.ChunkedArray) -> int:
    longest = pc.max(pc.utf8_length(values)).as_py()
    return int(longest) if longest is not None else 0


def postgres_forms(spec: DatasetSpec, table: pa.Table) -> pa.Table:
    """PostgreSQL's text forms of booleans and timestamps, as the shared casting reads them."""
    done: set[str] = set()
    for f in spec.fields:
        name = f.source_name
        if name not in table.column_names or name in done:
            continue
        values = table[name]
        if f.type == "boolean":
            values = pc.replace_substring_regex(values, pattern="^t$", replacement="true")
            values = pc.replace_substring_regex(values, pattern="^f$", replacement="false")
        elif f.type in ("date", "datetime") and _longest(values) > len("2024-05-01 13:45:00"):
            # Only a column with fractions or offsets pays for the regex (plain
            # timestamp and date columns are already in the casting's form).
            values = pc.replace_substring_regex(values, pattern=_PG_TIMESTAMP, replacement=r"\1")
        else:
            continue
        table = table.set_column(table.column_names.index(name), name, values)
        done.add(name)
    return table


@register_source("postgres")
class PostgresReader:
    suffix = ".csv"

    def pull(
        self, spec: DatasetSpec, settings: Settings, since: str | None = None
    ) -> Iterator[bytes]:
        return pull_csv(spec, settings, since)

    def read(self, spec: DatasetSpec, raw_path: Path) -> pa.Table:
        # The raw copy is the server's CSV: the CSV reader's checks (encoding, ragged rows,
        # duplicate headers, no rows) apply as they are.
        source = spec.source
        assert isinstance(source, PostgresSource)
        as_csv = CsvSource(
            kind="csv",
            path=str(raw_path),
            timestamp_formats=source.timestamp_formats,
            null_values=source.null_values,
        )
        table = CsvReader().read(spec.model_copy(update={"source": as_csv}), raw_path)
        return postgres_forms(spec, table)
