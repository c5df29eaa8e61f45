"""A PostgreSQL table or query as a source, extracted from a real server the session starts.

Each test has its own database (``postgres_db``): tables are made by the superuser over
the socket, civicflow reads them as ``civicflow_reader`` over TCP with a password
(scram-sha-256), exactly as a department's database would be read.
"""

from __future__ import annotations

import logging
import os
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from civicflow.ledger import Ledger
from civicflow.pipeline import run_dataset
from civicflow.settings import Settings
from civicflow.sources import ExtractError, SourceUnchanged, extract
from civicflow.sources import postgres as postgres_source
from civicflow.spec import find_dataset
from civicflow.spec.models import DatasetSpec, PortalTarget, PostgresSource
from tests.fixtures.portal import DatasetteServer, point_civicflow_at, unique_table
from tests.fixtures.postgres import PASSWORD_ENV, URL_ENV, Database, free_port

PROJECT = Path(__file__).resolve().parents[1]

CASES_TABLE = """
CREATE TABLE cases (
    id integer PRIMARY KEY,
    note text,
    amount numeric(12, 2),
    big bigint,
    open boolean,
    opened date,
    seen timestamp,
    updated_at timestamptz NOT NULL,
    remark text
)
"""
NOTE = 'Comma, "quoted" and\na new line; 100% done'
CASES_ROWS = [
    (1, NOTE, "12.50", 9007199254740993, True, "2024-05-01", "2024-05-01 13:45:00.25",
     "2024-05-01 15:45:00+02", "Ñandú – café, 東京"),
    (2, None, None, None, None, None, None, "2024-05-02 00:00:00+00", None),
    (3, "plain", "-0.50", -1, False, "1999-12-31", "1999-12-31 23:59:59",
     "2000-01-01 00:00:00-08", ""),
]  # fmt: skip
CASES_FIELDS: list[dict[str, Any]] = [
    {"name": "case_id", "source": "id", "type": "integer", "nullable": False},
    {"name": "note", "type": "string"},
    {"name": "amount", "type": "number"},
    {"name": "big", "type": "integer"},
    {"name": "open", "type": "boolean"},
    {"name": "opened", "type": "date"},
    {"name": "seen", "type": "datetime"},
    {"name": "updated_at", "type": "datetime", "nullable": False},
    {"name": "remark", "type": "string"},
]


def make_spec(
    source: dict[str, Any],
    fields: list[dict[str, Any]] = CASES_FIELDS,
    primary_key: list[str] | None = None,
    cursor: str | None = None,
) -> DatasetSpec:
    key = primary_key if primary_key is not None else [fields[0]["name"]]
    return DatasetSpec.model_validate(
        {
            "id": "pg_cases",
            "title": "Cases from PostgreSQL",
            "description": "Cases read from a test database.",
            "department": "Test department",
            "steward": {"name": "Test steward", "email": "steward@example.org"},
            "license": "CC0-1.0",
            "update_frequency": "daily",
            "category": "Test",
            "source": {"kind": "postgres", **source},
            "fields": [{"description": "A test column.", **f} for f in fields],
            "primary_key": key,
            "incremental": {"cursor": cursor} if cursor else None,
        }
    )


def settings_for(tmp_path: Path, env: dict[str, str]) -> Settings:
    return Settings(project_dir=PROJECT, var_dir=tmp_path / "var", env=env)


def load_cases(db: Database, rows: list[tuple[Any, ...]] = CASES_ROWS) -> None:
    with db.admin() as conn:
        conn.execute(CASES_TABLE)
        with conn.cursor() as cur:
            cur.executemany(f"INSERT INTO cases VALUES ({', '.join(['%s'] * 9)})", rows)


def raw_files(settings: Settings) -> list[Path]:
    folder = settings.raw_dir / "pg_cases"
    return sorted(folder.iterdir()) if folder.is_dir() else []


# -- full extracts --------------------------------------------------------------------


def test_a_table_round_trips_every_type(postgres_db: Database, tmp_path: Path) -> None:
    load_cases(postgres_db)
    settings = settings_for(tmp_path, postgres_db.env)
    result = extract(make_spec({"table": "cases"}), settings, "run1")

    frame = result.frame
    assert list(frame["case_id"]) == [1, 2, 3]
    assert frame.loc[1, "note"] == NOTE
    assert frame.loc[1, "remark"] == "Ñandú – café, 東京"
    assert list(frame["amount"].fillna(-99)) == [12.5, -99, -0.5]
    assert frame.loc[1, "big"] == 9007199254740993  # beyond float precision: stays an integer
    assert frame["open"].tolist() == [True, pd.NA, False]
    assert frame.loc[1, "opened"] == pd.Timestamp("2024-05-01")
    assert frame.loc[3, "opened"] == pd.Timestamp("1999-12-31")
    # timestamp: fractional seconds dropped; timestamptz: UTC wall time
    assert frame.loc[1, "seen"] == pd.Timestamp("2024-05-01 13:45:00")
    assert list(frame["updated_at"]) == [
        pd.Timestamp("2024-05-01 13:45:00"),
        pd.Timestamp("2024-05-02 00:00:00"),
        pd.Timestamp("2000-01-01 08:00:00"),
    ]
    # NULLs (and the empty string, a null value by default) are missing, not text
    assert frame.loc[2, ["note", "amount", "big", "open", "opened", "seen"]].isna().all()
    assert pd.isna(frame.loc[3, "remark"])

    (raw,) = raw_files(settings)
    assert raw == result.raw_path and stat.S_IMODE(raw.stat().st_mode) == 0o400
    assert raw.read_bytes().startswith(b"id,note,amount,big,open,opened,seen,updated_at,remark\n")
    # The raw copy replays to the same frame without the server.
    replay = extract(make_spec({"table": "cases"}), settings_for(tmp_path, {}), "run2", raw)
    pd.testing.assert_frame_equal(replay.frame, frame)


@pytest.mark.parametrize("key", [["case_id"], []], ids=["ordered by key", "as written"])
def test_a_query_is_extracted_with_its_own_columns(
    postgres_db: Database, tmp_path: Path, key: list[str]
) -> None:
    load_cases(postgres_db)
    with postgres_db.admin() as conn:
        conn.execute("CREATE TABLE kinds (id integer, kind text)")
        conn.execute("INSERT INTO kinds VALUES (1, 'graffiti'), (3, 'pothole {x}')")
    query = """
        SELECT c.id, k.kind, c.amount * 2 AS doubled
        FROM cases c JOIN kinds k USING (id)
        WHERE c.id <> 2 AND k.kind NOT LIKE '%%zz%'  -- a literal % is no placeholder;
    """
    fields = [
        {"name": "case_id", "source": "id", "type": "integer"},
        {"name": "kind", "type": "string"},
        {"name": "doubled", "type": "number"},
    ]
    settings = settings_for(tmp_path, postgres_db.env)
    frame = extract(make_spec({"query": query}, fields, key), settings, "run1").frame
    assert frame.sort_values("case_id").to_dict("list") == {
        "case_id": [1, 3],
        "kind": ["graffiti", "pothole {x}"],
        "doubled": [25.0, -1.0],
    }


def test_rows_come_in_primary_key_order_so_an_unchanged_table_hashes_the_same(
    postgres_db: Database, tmp_path: Path
) -> None:
    load_cases(postgres_db, list(reversed(CASES_ROWS)))
    settings = settings_for(tmp_path, postgres_db.env)
    spec = make_spec({"table": "public.cases"})
    first = extract(spec, settings, "run1")
    with postgres_db.admin() as conn:  # moves row 1 to the end of the heap
        conn.execute("UPDATE cases SET note = note WHERE id = 1")
    second = extract(spec, settings, "run2")
    assert list(first.frame["case_id"]) == [1, 2, 3]
    assert first.sha256 == second.sha256


def test_a_big_result_streams_in_chunks_byte_for_byte_with_progress_logged(
    postgres_db: Database,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(postgres_source, "CHUNK_BYTES", 64 << 10)
    monkeypatch.setattr(postgres_source, "PROGRESS_BYTES", 256 << 10)
    with postgres_db.admin() as conn:
        conn.execute(
            "CREATE TABLE big AS SELECT g AS id, md5(g::text) || E'\\n,\"' AS text "
            "FROM generate_series(1, 30000) AS g"
        )
        expected = bytearray()
        with conn.cursor().copy(
            "COPY (SELECT * FROM big ORDER BY id) TO STDOUT WITH (FORMAT csv, HEADER true)"
        ) as copy:
            for data in copy:
                expected += data
    fields = [{"name": "id", "type": "integer"}, {"name": "text", "type": "string"}]
    caplog.set_level(logging.INFO, logger="civicflow.sources.postgres")
    result = extract(
        make_spec({"table": "big"}, fields), settings_for(tmp_path, postgres_db.env), "r"
    )
    assert result.raw_path.read_bytes() == bytes(expected)
    assert result.rows == 30000 and result.frame.loc[30000, "text"].endswith('\n,"')
    messages = [r.getMessage() for r in caplog.records]
    assert sum("streaming" in m for m in messages) >= 3
    assert any("done, 30,000 rows" in m for m in messages)


# -- incremental extracts -------------------------------------------------------------


def test_since_pulls_only_rows_changed_after_the_watermark(
    postgres_db: Database, tmp_path: Path
) -> None:
    load_cases(postgres_db)
    settings = settings_for(tmp_path, postgres_db.env)
    spec = make_spec({"table": "cases"}, cursor="updated_at")
    full = extract(spec, settings, "run1")
    mark = full.frame["updated_at"].max().isoformat()
    assert mark == "2024-05-02T00:00:00"

    with postgres_db.admin() as conn:
        conn.execute(
            "INSERT INTO cases (id, note, updated_at) VALUES (4, 'new', '2024-05-03 09:00+00')"
        )
        conn.execute(
            "UPDATE cases SET note = 'changed', updated_at = '2024-05-02 00:00:01+00' WHERE id = 3"
        )
        conn.execute("UPDATE cases SET note = 'same second' WHERE id = 2")  # cursor not moved
        conn.execute("DELETE FROM cases WHERE id = 1")

    changed = extract(spec, settings, "run2", since=mark).frame
    assert changed[["case_id", "note"]].to_dict("list") == {
        "case_id": [3, 4],
        "note": ["changed", "new"],
    }
    # A full refresh sees the delete (an incremental pull cannot).
    assert list(extract(spec, settings, "run3").frame["case_id"]) == [2, 3, 4]


def test_nothing_newer_than_the_watermark_is_unchanged_and_leaves_no_raw_copy(
    postgres_db: Database, tmp_path: Path
) -> None:
    load_cases(postgres_db)
    settings = settings_for(tmp_path, postgres_db.env)
    spec = make_spec({"table": "cases"}, cursor="updated_at")
    with pytest.raises(SourceUnchanged):
        extract(spec, settings, "run1", since="2024-05-02T00:00:00")
    assert raw_files(settings) == []


@pytest.mark.parametrize(
    ("pg_type", "spec_type", "values", "since", "expected"),
    [
        ("bigint", "integer", ["1", "5", "12"], "5", [3]),
        ("date", "date", ["2024-01-01", "2024-01-02", "2024-01-03"], "2024-01-02T00:00:00", [3]),
        ("timestamp", "datetime", ["2024-01-01 10:00", "2024-01-01 10:00:00.5", "2024-01-01 10:00:01"],
         "2024-01-01T10:00:00", [2, 3]),
    ],
)  # fmt: skip
def test_the_watermark_compares_as_the_cursor_column_type(
    postgres_db: Database,
    tmp_path: Path,
    pg_type: str,
    spec_type: str,
    values: list[str],
    since: str,
    expected: list[int],
) -> None:
    with postgres_db.admin() as conn:
        conn.execute(f"CREATE TABLE marks (id integer PRIMARY KEY, version {pg_type})")
        for i, value in enumerate(values, 1):
            conn.execute("INSERT INTO marks VALUES (%s, %s)", [i, value])
    fields = [{"name": "id", "type": "integer"}, {"name": "version", "type": spec_type}]
    spec = make_spec({"table": "marks"}, fields, cursor="version")
    settings = settings_for(tmp_path, postgres_db.env)
    frame = extract(spec, settings, "run1", since=since).frame
    assert list(frame["id"]) == expected


# -- failures -------------------------------------------------------------------------


def wait_for(condition: Any, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


def test_a_backend_terminated_mid_extract_leaves_no_raw_copy(
    postgres_db: Database, tmp_path: Path
) -> None:
    # 40,000 rows stream out, then the backend sleeps until it is terminated: by then
    # several MiB are in the (private, temporary) raw file.
    query = """
        SELECT g AS id, repeat('x', 200) AS pad,
               CASE WHEN g = 40000 THEN pg_sleep(120)::text END AS pause
        FROM generate_series(1, 50000) AS g
    """
    fields = [{"name": "id", "type": "integer"}, {"name": "pad", "type": "string"}]
    settings = settings_for(tmp_path, postgres_db.env)
    spec = make_spec({"query": query}, fields, primary_key=[])  # ORDER BY would wait for all
    folder = settings.raw_dir / "pg_cases"

    def terminate() -> None:
        with postgres_db.admin() as conn:
            sleeping = (
                "SELECT pid FROM pg_stat_activity WHERE application_name = 'civicflow' "
                "AND wait_event = 'PgSleep' AND datname = %s"
            )
            wait_for(lambda: conn.execute(sleeping, [postgres_db.name]).fetchone() is not None)
            wait_for(lambda: any(p.suffix == ".part" for p in folder.glob(".*")))
            partial.append(sum(p.stat().st_size for p in folder.glob(".*.part")))
            conn.execute(
                f"SELECT pg_terminate_backend(pid) FROM ({sleeping}) AS s", [postgres_db.name]
            )

    partial: list[int] = []
    killer = threading.Thread(target=terminate)
    killer.start()
    try:
        with pytest.raises(ExtractError, match="connection was lost") as err:
            extract(spec, settings, "run1")
    finally:
        killer.join()
    assert partial and partial[0] > 1 << 20  # a partial copy existed and is gone
    assert list(folder.iterdir()) == []
    assert err.value.detail and "57P01" in err.value.detail  # admin_shutdown


def test_the_statement_timeout_stops_a_slow_query(postgres_db: Database, tmp_path: Path) -> None:
    spec = make_spec(
        {"query": "SELECT 1 AS id, pg_sleep(5)::text AS slow", "statement_timeout_s": 1},
        [{"name": "id", "type": "integer"}],
    )
    with pytest.raises(ExtractError, match=r"statement_timeout_s \(1 s\)") as err:
        extract(spec, settings_for(tmp_path, postgres_db.env), "run1")
    assert "57014" in (err.value.detail or "")


def test_a_query_that_writes_is_refused(postgres_db: Database, tmp_path: Path) -> None:
    load_cases(postgres_db)
    with postgres_db.admin() as conn:
        conn.execute(
            "CREATE FUNCTION sneaky() RETURNS SETOF cases LANGUAGE sql AS "
            "$$ DELETE FROM cases RETURNING * $$"
        )
        conn.execute("GRANT EXECUTE ON FUNCTION sneaky() TO PUBLIC")
        conn.execute("GRANT DELETE ON cases TO civicflow_reader")  # only read-only stops it
    spec = make_spec({"query": "SELECT * FROM sneaky()"})
    with pytest.raises(ExtractError, match="tried to write"):
        extract(spec, settings_for(tmp_path, postgres_db.env), "run1")
    with postgres_db.admin() as conn:
        assert conn.execute("SELECT count(*) FROM cases").fetchone() == (3,)


def test_a_wrong_password_names_the_variables_and_never_the_password(
    postgres_db: Database, tmp_path: Path
) -> None:
    wrong = "Wr0ng-but-secret-" + postgres_db.password[:6]
    env = {**postgres_db.env, PASSWORD_ENV: wrong}
    with pytest.raises(ExtractError) as err:
        extract(make_spec({"table": "cases"}), settings_for(tmp_path, env), "run1")
    message, detail = str(err.value), err.value.detail or ""
    assert "authentication failed" in message
    assert URL_ENV in message and PASSWORD_ENV in message
    for text in (message, detail):
        assert wrong not in text and postgres_db.password not in text
    assert "password authentication failed" in detail  # the server's words, privately


def test_a_missing_password_says_it_is_not_set(postgres_db: Database, tmp_path: Path) -> None:
    env = {URL_ENV: postgres_db.url}
    with pytest.raises(ExtractError, match=f"{PASSWORD_ENV} is not set"):
        extract(make_spec({"table": "cases"}), settings_for(tmp_path, env), "run1")


def test_a_flow_reads_the_password_from_a_prefect_secret_block(
    postgres_db: Database, tmp_path: Path, prefect_harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The spec names its own password variable; the worker's environment lacks it, so
    the flow's settings take it from the Secret block of the same name in kebab case."""
    import yaml
    from prefect.blocks.system import Secret

    from flows._common import flow_settings

    password_env = "CIVICFLOW_CASES_DB_PASSWORD"  # noqa: S105  (a variable's name)
    project = tmp_path / "project"
    (project / "datasets").mkdir(parents=True)
    spec = make_spec({"table": "cases", "connection_env": URL_ENV, "password_env": password_env})
    (project / "datasets" / "pg_cases.yaml").write_text(
        yaml.safe_dump(spec.model_dump(mode="json", exclude_none=True), sort_keys=False)
    )
    monkeypatch.setenv("CIVICFLOW_PROJECT_DIR", str(project))
    monkeypatch.setenv("CIVICFLOW_VAR_DIR", str(tmp_path / "var"))
    monkeypatch.setenv(URL_ENV, postgres_db.url)
    monkeypatch.delenv(password_env, raising=False)
    load_cases(postgres_db)

    def settings() -> Settings:
        umask = os.umask(0o077)
        os.umask(umask)
        try:
            return flow_settings()  # sets the process umask to 077: restored after
        finally:
            os.umask(umask)

    spec = find_dataset(project / "datasets", "pg_cases")
    with pytest.raises(ExtractError, match=f"{password_env} is not set"):
        extract(spec, settings(), "run0")  # no block yet: the variable is named

    Secret(value=postgres_db.password).save("civicflow-cases-db-password", overwrite=True)
    filled = settings()
    assert password_env not in os.environ and filled.secret(password_env) == postgres_db.password
    assert postgres_db.password not in repr(filled)
    result = extract(spec, filled, "run1")
    assert list(result.frame["case_id"]) == [1, 2, 3]
    assert result.frame.loc[1, "note"] == NOTE


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, f"{URL_ENV} is not set"),
        ({URL_ENV: "postgresql://u:hunter2-pass@127.0.0.1/db"}, f"{URL_ENV} contains a password"),
        ({URL_ENV: "host=127.0.0.1 password=hunter2-pass"}, f"{URL_ENV} contains a password"),
        ({URL_ENV: "postgresql://u@h:5432/d b hunter2-pass"}, "not a libpq URL"),
    ],
)
def test_connection_settings_are_checked_before_connecting(
    tmp_path: Path, env: dict[str, str], expected: str
) -> None:
    with pytest.raises(ExtractError, match=expected) as err:
        extract(make_spec({"table": "cases"}), settings_for(tmp_path, env), "run1")
    assert "hunter2" not in str(err.value) and "hunter2" not in (err.value.detail or "")


def test_a_server_that_is_not_there_is_named_by_its_variable(tmp_path: Path) -> None:
    env = {URL_ENV: f"postgresql://reader@127.0.0.1:{free_port()}/db", PASSWORD_ENV: "pw-x"}
    with pytest.raises(ExtractError, match=f"cannot reach the server named in {URL_ENV}"):
        extract(make_spec({"table": "cases"}), settings_for(tmp_path, env), "run1")


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ({"table": "no_such_table"}, "table or view not found"),
        ({"query": "SELECT id, no_such_column FROM cases"}, "column not found"),
        ({"query": "SELEC id FROM cases"}, "does not parse"),
    ],
)
def test_a_wrong_table_column_or_query_is_named(
    postgres_db: Database, tmp_path: Path, source: dict[str, str], expected: str
) -> None:
    load_cases(postgres_db)
    with pytest.raises(ExtractError, match=expected):
        extract(make_spec(source), settings_for(tmp_path, postgres_db.env), "run1")
    assert raw_files(settings_for(tmp_path, postgres_db.env)) == []


def test_a_table_the_role_may_not_read_is_a_permission_error(
    postgres_db: Database, tmp_path: Path
) -> None:
    load_cases(postgres_db)
    with postgres_db.admin() as conn:
        conn.execute("REVOKE SELECT ON cases FROM civicflow_reader")
    with pytest.raises(ExtractError, match=f"the role in {URL_ENV} needs SELECT"):
        extract(make_spec({"table": "cases"}), settings_for(tmp_path, postgres_db.env), "run1")


# -- through the pipeline ---------------------------------------------------------------

EXAMPLE = "code_enforcement_case_status"  # the bundled incremental PostgreSQL example
EXAMPLE_TABLE = """
CREATE TABLE case_status (
    case_number text PRIMARY KEY, date_opened date NOT NULL, date_closed date,
    status text NOT NULL, violation_type text NOT NULL, council_district smallint NOT NULL,
    is_open boolean NOT NULL, updated_at timestamptz NOT NULL
);
INSERT INTO case_status
SELECT format('CE-2025-%s', lpad(i::text, 6, '0')), date '2025-01-01' + i, NULL, 'Open',
       'Graffiti', 1 + i % 15, true, timestamptz '2025-06-01 16:00+00' + i * interval '1 minute'
FROM generate_series(1, 200) AS i;
CREATE VIEW cases_read AS SELECT * FROM case_status;
"""
# The same view, but the backend sleeps on one row until the test terminates it.
STALLING_VIEW = """
CREATE OR REPLACE VIEW cases_read AS
SELECT c.* FROM case_status c
WHERE CASE WHEN c.case_number = 'CE-2025-000100' THEN pg_sleep(120)::text = '' ELSE true END
"""


def test_a_backend_terminated_mid_run_keeps_the_watermark_and_the_portal(
    postgres_db: Database,
    datasette_server: DatasetteServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with postgres_db.admin() as conn:
        conn.execute(EXAMPLE_TABLE)
    monkeypatch.setenv("CIVICFLOW_EXAMPLE_PG_URL", postgres_db.url)
    monkeypatch.setenv("CIVICFLOW_EXAMPLE_PG_PASSWORD", postgres_db.password)
    settings = point_civicflow_at(datasette_server, tmp_path / "var", monkeypatch)
    bundled = find_dataset(settings.datasets_dir, EXAMPLE)
    assert isinstance(bundled.source, PostgresSource)
    source = bundled.source.model_copy(update={"table": None, "query": "SELECT * FROM cases_read"})
    target = PortalTarget(kind="datasette", table=unique_table("pgkill"))
    spec = bundled.model_copy(update={"source": source, "portal": target})
    ledger = Ledger(settings.ledger_path)

    assert run_dataset(settings, EXAMPLE, spec=spec).outcome == "published"
    mark = ledger.watermark(EXAMPLE, "updated_at")
    assert mark == "2025-06-01T19:20:00"

    with postgres_db.admin() as conn:
        conn.execute(
            "UPDATE case_status SET status = 'Closed', date_closed = date_opened, "
            "is_open = false, updated_at = '2025-07-01 10:00+00' WHERE case_number = 'CE-2025-000100'"
        )
        conn.execute(STALLING_VIEW)

    def terminate() -> None:
        with postgres_db.admin() as conn:
            sleeping = (
                "SELECT pid FROM pg_stat_activity WHERE application_name = 'civicflow' "
                "AND wait_event = 'PgSleep' AND datname = %s"
            )
            wait_for(lambda: conn.execute(sleeping, [postgres_db.name]).fetchone() is not None)
            conn.execute(
                f"SELECT pg_terminate_backend(pid) FROM ({sleeping}) AS s", [postgres_db.name]
            )

    killer = threading.Thread(target=terminate)
    killer.start()
    try:
        killed = run_dataset(settings, EXAMPLE, spec=spec)
    finally:
        killer.join()
    assert killed.outcome == "rejected" and "connection was lost" in killed.reason
    assert ledger.watermark(EXAMPLE, "updated_at") == mark
    assert datasette_server.query(
        f"select status from {target.table} where case_number = 'CE-2025-000100'"
    ) == [{"status": "Open"}]

    with postgres_db.admin() as conn:
        conn.execute("CREATE OR REPLACE VIEW cases_read AS SELECT * FROM case_status")
    again = run_dataset(settings, EXAMPLE, spec=spec)
    assert again.outcome == "published", again.reason
    assert again.record.rows_in == 1
    assert ledger.watermark(EXAMPLE, "updated_at") == "2025-07-01T10:00:00"


def test_the_example_script_without_postgresql_says_how_to_enable_it(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(PROJECT / "scripts" / "dev_postgres.py"), "start"],
        env={
            **os.environ,
            "CIVICFLOW_PG_BIN": str(tmp_path / "none"),
            "CIVICFLOW_VAR_DIR": str(tmp_path),
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert (done.returncode, done.stdout) == (0, "")  # nothing for `eval` to run
    assert "make system-deps" in done.stderr and len(done.stderr.splitlines()) == 1
