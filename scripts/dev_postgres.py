"""The bundled PostgreSQL example: a local database holding a department's case table.

    .venv/bin/python scripts/dev_postgres.py start    # start (or reuse) it, print env lines
    eval "$(.venv/bin/python scripts/dev_postgres.py start)"   # ... and use them
    .venv/bin/python scripts/dev_postgres.py change 5 # close 5 open cases, open 5 new ones
    .venv/bin/python scripts/dev_postgres.py stop
    .venv/bin/python scripts/dev_postgres.py remove   # stop and delete it (and its password)

``start`` runs a PostgreSQL 15 cluster on 127.0.0.1:54329, creates the role
``civicflow_reader`` (password generated once into ``var/postgres/reader-password``,
owner-only) and the database ``civicflow_example`` with the table ``case_status``, loaded
from the public columns of ``data/code_enforcement_cases/code_enforcement_cases.csv``
(complainants, addresses and notes never enter the database). It prints, on stdout only,
the shell lines that give civicflow the connection: the password itself is read from its
file by the shell, never printed. ``datasets/code_enforcement_case_status.yaml`` reads the
table incrementally on ``updated_at``; ``change`` edits rows the way the department's
case system would, so the next run extracts just those.

Where the cluster lives: under ``var/postgres/`` when this runs as an ordinary user. As
root the server must run as the ``postgres`` user, which cannot enter ``var/`` (civicflow
keeps it owner-only, 0700), so the cluster is kept in ``/var/tmp/civicflow-postgres-54329``.

Without PostgreSQL installed, ``start`` says in one line how to enable it and exits 0.
"""

from __future__ import annotations

import argparse
import csv
import os
import secrets
import shutil
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

from psycopg import sql  # noqa: E402

from tests.fixtures.postgres import READER, Cluster, installed  # noqa: E402

PORT = 54329
DATABASE = "civicflow_example"
TABLE = "case_status"
URL_ENV = "CIVICFLOW_EXAMPLE_PG_URL"
PASSWORD_ENV = "CIVICFLOW_EXAMPLE_PG_PASSWORD"  # noqa: S105  (a variable's name)
SOURCE_CSV = PROJECT / "data" / "code_enforcement_cases" / "code_enforcement_cases.csv"
ENABLE_HINT = (
    "civicflow: PostgreSQL example skipped (PostgreSQL 15 is not installed; "
    "`make system-deps` as root installs it)"
)

SCHEMA = f"""
CREATE TABLE {TABLE} (
    case_number text PRIMARY KEY,
    date_opened date NOT NULL,
    date_closed date,
    status text NOT NULL,
    violation_type text NOT NULL,
    council_district smallint NOT NULL,
    is_open boolean NOT NULL,
    updated_at timestamptz NOT NULL
);
CREATE INDEX ON {TABLE} (updated_at);
"""


def var_dir() -> Path:
    return Path(os.environ.get("CIVICFLOW_VAR_DIR") or PROJECT / "var").resolve()


def cluster() -> Cluster:
    root = var_dir() / "postgres" / "cluster"
    if os.geteuid() == 0:
        root = Path(f"/var/tmp/civicflow-postgres-{PORT}")
    return Cluster(root, port=PORT)


def reader_password() -> str:
    """The reader's password: generated once, kept owner-only beside var/'s other secrets."""
    path = var_dir() / "postgres" / "reader-password"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(24))
    return path.read_text().strip()


def case_rows() -> Iterator[tuple[object, ...]]:
    """The public columns of each case, plus when the case system last touched it."""
    with SOURCE_CSV.open(encoding="utf-8", newline="") as fh:
        for row in csv.DictReader(fh):
            opened = datetime.strptime(row["Date Opened"], "%m/%d/%Y")
            closed = (
                datetime.strptime(row["Date Closed"], "%m/%d/%Y") if row["Date Closed"] else None
            )
            number = int(row["Case Number"].rsplit("-", 1)[1])
            # Last edit: the day it closed (or opened), during office hours (UTC).
            touched = (closed or opened) + timedelta(hours=16, minutes=number % 480)
            yield (
                row["Case Number"], opened.date(), closed.date() if closed else None,
                row["Status"], row["Violation Type"], int(row["Council District"]),
                closed is None, f"{touched:%Y-%m-%d %H:%M:%S}+00",
            )  # fmt: skip


def load(pg: Cluster) -> int:
    """Create the database and table once; returns the rows in the table."""
    pg.ensure_role(READER, reader_password())
    with pg.admin() as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DATABASE]).fetchone()
    if not exists:
        pg.create_database(DATABASE, READER)
        with pg.admin(DATABASE) as conn:
            conn.execute(SCHEMA)
            with conn.cursor().copy(
                sql.SQL("COPY {} FROM STDIN").format(sql.Identifier(TABLE))
            ) as copy:
                for row in case_rows():
                    copy.write_row(row)
    with pg.admin(DATABASE) as conn:
        count = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(TABLE)))
        return int(count.fetchone()[0])  # type: ignore[index]


def start() -> None:
    if not installed():
        print(ENABLE_HINT, file=sys.stderr)
        return
    pg = cluster().init().start()
    rows = load(pg)
    print(
        f"civicflow: PostgreSQL example on 127.0.0.1:{PORT}, {DATABASE}.{TABLE} ({rows:,} rows)",
        file=sys.stderr,
    )
    password_file = var_dir() / "postgres" / "reader-password"
    print(f"export {URL_ENV}=postgresql://{READER}@127.0.0.1:{PORT}/{DATABASE}")
    print(f'export {PASSWORD_ENV}="$(cat {password_file})"')


def change(count: int) -> None:
    """Close ``count`` open cases and open as many new ones, stamped now (as the case system would)."""
    pg = cluster()
    if not installed() or not pg.running:
        sys.exit(
            "civicflow: the PostgreSQL example is not running; run `scripts/dev_postgres.py start`"
        )
    with pg.admin(DATABASE) as conn:
        closed = conn.execute(
            """UPDATE case_status SET status = 'Closed', date_closed = current_date,
                   is_open = false, updated_at = now()
               WHERE case_number IN (SELECT case_number FROM case_status WHERE is_open
                                     ORDER BY case_number LIMIT %s)""",
            [count],
        ).rowcount
        opened = conn.execute(
            """INSERT INTO case_status
               SELECT format('CE-%%s-%%s', extract(year FROM current_date),
                             lpad((max_n + g)::text, 6, '0')),
                      current_date, NULL, 'Open', 'Illegal Dumping', 1 + g %% 15, true, now()
               FROM (SELECT max(split_part(case_number, '-', 3)::int) AS max_n FROM case_status) m,
                    generate_series(1, %s) AS g""",
            [count],
        ).rowcount
    print(
        f"civicflow: closed {closed} and opened {opened} case(s); the next run extracts only these"
    )


def stop() -> None:
    pg = cluster()
    if installed() and pg.running:
        pg.stop()
        print(f"civicflow: PostgreSQL example on port {PORT} stopped", file=sys.stderr)


def remove() -> None:
    """Stop the cluster and delete it with the reader's password (the next start loads afresh)."""
    stop()
    pg = cluster()
    shutil.rmtree(pg.root, ignore_errors=True)
    (var_dir() / "postgres" / "reader-password").unlink(missing_ok=True)
    print(f"civicflow: PostgreSQL example removed ({pg.root})", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("start", help="start (or reuse) the example database; print env lines")
    edit = commands.add_parser("change", help="close N open cases and open N new ones")
    edit.add_argument("count", type=int, nargs="?", default=5)
    commands.add_parser("stop", help="stop the example database")
    commands.add_parser("remove", help="stop it and delete its files")
    args = parser.parse_args()
    if args.command == "start":
        start()
    elif args.command == "change":
        change(args.count)
    elif args.command == "stop":
        stop()
    else:
        remove()


if __name__ == "__main__":
    main()
