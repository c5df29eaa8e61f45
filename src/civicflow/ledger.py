"""Run history: every run of every dataset, whatever its outcome, in SQLite under var/.

The ledger is what stewards read to see why a run failed, and what certification
criteria (timeliness, quality pass rate) are computed from. It also keeps one summary per
version a run published (rows added, changed and deleted, checks passed): the catalog's
version history, which publishes send with their metadata.
"""

from __future__ import annotations

import os
import socket
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import ClassVar, Literal

from civicflow.privatefs import FILE_MODE, private_dir

Outcome = Literal["published", "unchanged", "rejected", "failed"]
OUTCOMES: tuple[str, ...] = ("published", "unchanged", "rejected", "failed")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    dataset_id TEXT NOT NULL,
    run_id TEXT NOT NULL,
    started_at TEXT NOT NULL,
    finished_at TEXT NOT NULL,
    outcome TEXT NOT NULL CHECK (outcome IN ('published', 'unchanged', 'rejected', 'failed')),
    reason TEXT NOT NULL,
    rows_in INTEGER,
    rows_out INTEGER,
    critical_passed INTEGER NOT NULL DEFAULT 0,
    critical_failed INTEGER NOT NULL DEFAULT 0,
    warning_passed INTEGER NOT NULL DEFAULT 0,
    warning_failed INTEGER NOT NULL DEFAULT 0,
    privacy_findings INTEGER NOT NULL DEFAULT 0,
    portal_version TEXT,
    report_path TEXT,
    privacy_report_path TEXT,
    rows_quarantined INTEGER NOT NULL DEFAULT 0,
    input_key TEXT,
    source_modified TEXT,
    PRIMARY KEY (dataset_id, run_id)
);
CREATE INDEX IF NOT EXISTS runs_by_time ON runs (started_at);
CREATE TABLE IF NOT EXISTS started (
    dataset_id TEXT NOT NULL,
    run_id TEXT NOT NULL,
    started_at TEXT NOT NULL,
    pid INTEGER NOT NULL,
    host TEXT NOT NULL,
    PRIMARY KEY (dataset_id, run_id)
);
CREATE TABLE IF NOT EXISTS versions (
    dataset_id TEXT NOT NULL,
    portal TEXT NOT NULL,
    run_id TEXT NOT NULL,
    data_version TEXT,
    portal_version TEXT,
    published_at TEXT,
    rows INTEGER,
    added INTEGER,
    changed INTEGER,
    deleted INTEGER,
    checks_passed INTEGER,
    checks_total INTEGER,
    PRIMARY KEY (dataset_id, portal, run_id)
);
CREATE TABLE IF NOT EXISTS watermarks (
    dataset_id TEXT PRIMARY KEY,
    cursor TEXT NOT NULL,
    value TEXT NOT NULL,
    run_id TEXT NOT NULL
);
"""

#: columns added after the first ledgers were written: (name, SQL type and default)
_ADDED_COLUMNS = {
    "rows_quarantined": "INTEGER NOT NULL DEFAULT 0",
    "input_key": "TEXT",
    "source_modified": "TEXT",
}

#: ``PRAGMA user_version`` of a ledger whose reasons are public-safe (no source values)
_PUBLIC_REASONS = 1
WITHHELD = (
    "reason withheld: recorded by an earlier civicflow whose reasons could quote source "
    "values; the run's report has the detail"
)


@dataclass(frozen=True)
class RunRecord:
    """One finished run of one dataset."""

    dataset_id: str
    run_id: str
    started_at: datetime
    finished_at: datetime
    outcome: Outcome
    reason: str
    rows_in: int | None = None
    rows_out: int | None = None
    critical_passed: int = 0
    critical_failed: int = 0
    warning_passed: int = 0
    warning_failed: int = 0
    privacy_findings: int = 0
    portal_version: str | None = None
    report_path: str | None = None
    privacy_report_path: str | None = None
    #: bad rows held back in the private quarantine file (on_bad_rows: quarantine)
    rows_quarantined: int = 0
    #: sha256 of what the run read (raw copy, spec, suite): an equal key later means
    #: the same input, which ends ``unchanged`` before any check or portal write
    input_key: str | None = None
    #: when the source says its data last changed (ISO 8601, UTC: a file's modification
    #: time, an HTTP Last-Modified), None when it does not say
    source_modified: str | None = None

    @property
    def duration_s(self) -> float:
        return (self.finished_at - self.started_at).total_seconds()


_COLUMNS = [f.name for f in fields(RunRecord)]


@dataclass(frozen=True)
class VersionSummary:
    """What one published version changed: counts only, never a value.

    ``added``/``changed``/``deleted`` are None when unknown (no kept copy of the version
    before to compare with); ``changed`` is also None for a table without a primary key,
    where a changed row counts as one deleted and one added. ``checks_*`` count the
    publishing run's checks of both severities (None when it sent none).
    """

    dataset_id: str
    portal: str
    run_id: str
    data_version: str | None
    added: int | None
    changed: int | None
    deleted: int | None
    checks_passed: int | None
    checks_total: int | None
    #: known once the portal made it live
    portal_version: str | None = None
    published_at: str | None = None
    rows: int | None = None

    #: the keys a version's entry in the published metadata has (``extra.history``):
    #: all known before the publish, so the same version always carries the same entry
    HISTORY_KEYS: ClassVar[tuple[str, ...]] = (
        "run_id",
        "data_version",
        "added",
        "changed",
        "deleted",
        "checks_passed",
        "checks_total",
    )

    def history_entry(self) -> dict[str, object]:
        return {k: getattr(self, k) for k in self.HISTORY_KEYS}


_VERSION_COLUMNS = [f.name for f in fields(VersionSummary)]


@dataclass(frozen=True)
class Unfinished:
    """A run that began and has not recorded an outcome: running, or its process died."""

    dataset_id: str
    run_id: str
    started_at: datetime
    pid: int
    host: str

    @property
    def alive(self) -> bool | None:
        """Whether its process still runs (None: on another host, cannot tell)."""
        if self.host != socket.gethostname():
            return None
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # another user's process with that pid
            return True
        return True

    @property
    def state(self) -> str:
        return "crashed" if self.alive is False else "running"

    def crash_reason(self) -> str:
        return (
            f"crashed: the run's process (pid {self.pid}) ended without recording an "
            "outcome (killed?); the portal kept its last good version"
        )


def _to_row(record: RunRecord) -> dict[str, object]:
    row = asdict(record)
    for key in ("started_at", "finished_at"):
        row[key] = row[key].astimezone(UTC).isoformat()
    return row


def _from_row(row: sqlite3.Row) -> RunRecord:
    data = dict(row)
    for key in ("started_at", "finished_at"):
        data[key] = datetime.fromisoformat(data[key])
    return RunRecord(**data)


class Ledger:
    """The run ledger in one SQLite file."""

    def __init__(self, path: Path):
        self.path = path
        private_dir(path.parent)
        with self._connect() as db:
            db.executescript(_SCHEMA)
            self._upgrade(db)
        # Reasons are public, but the ledger also names private report paths.
        os.chmod(path, FILE_MODE)

    @staticmethod
    def _upgrade(db: sqlite3.Connection) -> None:
        have = {row[1] for row in db.execute("PRAGMA table_info(runs)")}
        for name, decl in _ADDED_COLUMNS.items():
            if name not in have:
                db.execute(f"ALTER TABLE runs ADD COLUMN {name} {decl}")
        Ledger._withhold_old_reasons(db)

    @staticmethod
    def _withhold_old_reasons(db: sqlite3.Connection) -> None:
        """Withhold reasons written before reasons were public-safe.

        The scorecard shows every reason, and older versions quoted source values in
        rejected and failed runs' reasons. Which part was a value cannot be told after
        the fact, so those reasons are replaced; the private reports keep the detail.
        """
        (version,) = db.execute("PRAGMA user_version").fetchone()
        if version >= _PUBLIC_REASONS:
            return
        db.execute(
            "UPDATE runs SET reason = ? WHERE outcome IN ('rejected', 'failed')", (WITHHELD,)
        )
        db.execute(f"PRAGMA user_version = {_PUBLIC_REASONS}")

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=30)
        db.row_factory = sqlite3.Row
        try:
            with db:
                yield db
        finally:
            db.close()

    def begin(self, dataset_id: str, run_id: str, started_at: datetime) -> None:
        """Note a run as it starts, so one that dies before ``record`` shows as crashed."""
        with self._connect() as db:
            db.execute(
                "INSERT OR REPLACE INTO started VALUES (?, ?, ?, ?, ?)",
                (
                    dataset_id,
                    run_id,
                    started_at.astimezone(UTC).isoformat(),
                    os.getpid(),
                    socket.gethostname(),
                ),
            )

    def record(self, run: RunRecord) -> None:
        if run.outcome not in OUTCOMES:
            raise ValueError(f"unknown outcome {run.outcome!r}")
        placeholders = ", ".join(f":{c}" for c in _COLUMNS)
        with self._connect() as db:
            db.execute(
                f"INSERT OR REPLACE INTO runs ({', '.join(_COLUMNS)}) VALUES ({placeholders})",
                _to_row(run),
            )
            db.execute(
                "DELETE FROM started WHERE dataset_id = ? AND run_id = ?",
                (run.dataset_id, run.run_id),
            )

    def source_modified(self, dataset_id: str) -> str | None:
        """The latest source modification time a good run (published or unchanged) read."""
        with self._connect() as db:
            row = db.execute(
                "SELECT max(source_modified) FROM runs WHERE dataset_id = ?"
                " AND outcome IN ('published', 'unchanged')",
                (dataset_id,),
            ).fetchone()
        return row[0] if row else None

    def unfinished(self, dataset_id: str | None = None) -> list[Unfinished]:
        """Runs that began and recorded no outcome, newest first."""
        sql = "SELECT * FROM started"
        params: list[object] = []
        if dataset_id is not None:
            sql += " WHERE dataset_id = ?"
            params.append(dataset_id)
        with self._connect() as db:
            rows = db.execute(sql + " ORDER BY started_at DESC", params).fetchall()
        return [
            Unfinished(
                r["dataset_id"],
                r["run_id"],
                datetime.fromisoformat(r["started_at"]),
                int(r["pid"]),
                r["host"],
            )
            for r in rows
        ]

    def record_crashes(self, dataset_id: str, now: datetime) -> list[RunRecord]:
        """Record each unfinished run of ``dataset_id`` whose process is gone as failed.

        Called when the next run of the dataset starts, so the crash counts in the run
        history, the scorecard and alerts like any failure.
        """
        crashed = [u for u in self.unfinished(dataset_id) if u.alive is False]
        records = [
            RunRecord(
                dataset_id=u.dataset_id,
                run_id=u.run_id,
                started_at=u.started_at,
                finished_at=now,
                outcome="failed",
                reason=u.crash_reason(),
            )
            for u in crashed
        ]
        for record in records:
            self.record(record)
        return records

    def runs(
        self, dataset_id: str | None = None, since: datetime | None = None, limit: int | None = None
    ) -> list[RunRecord]:
        """Runs, newest first, optionally for one dataset and since a time."""
        sql = "SELECT * FROM runs WHERE 1=1"
        params: list[object] = []
        if dataset_id is not None:
            sql += " AND dataset_id = ?"
            params.append(dataset_id)
        if since is not None:
            sql += " AND started_at >= ?"
            params.append(since.astimezone(UTC).isoformat())
        sql += " ORDER BY started_at DESC, run_id DESC"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        with self._connect() as db:
            return [_from_row(r) for r in db.execute(sql, params)]

    def last(self, dataset_id: str, outcome: Outcome | None = None) -> RunRecord | None:
        sql = "SELECT * FROM runs WHERE dataset_id = ?"
        params: list[object] = [dataset_id]
        if outcome is not None:
            sql += " AND outcome = ?"
            params.append(outcome)
        sql += " ORDER BY started_at DESC, run_id DESC LIMIT 1"
        with self._connect() as db:
            row = db.execute(sql, params).fetchone()
        return _from_row(row) if row else None

    # -- incremental extracts: the cursor value up to which rows are published -------

    def watermark(self, dataset_id: str, cursor: str) -> str | None:
        """The stored watermark, or None (never ran, or the spec names another cursor)."""
        with self._connect() as db:
            row = db.execute(
                "SELECT value FROM watermarks WHERE dataset_id = ? AND cursor = ?",
                (dataset_id, cursor),
            ).fetchone()
        return str(row[0]) if row else None

    def advance_watermark(self, dataset_id: str, cursor: str, value: str, run_id: str) -> None:
        """Store ``value`` after ``run_id`` published (or held unchanged) its rows."""
        with self._connect() as db:
            db.execute(
                "INSERT OR REPLACE INTO watermarks (dataset_id, cursor, value, run_id) "
                "VALUES (?, ?, ?, ?)",
                (dataset_id, cursor, value, run_id),
            )

    # -- published versions: what each changed (the catalog's version history) --------

    def record_version(self, summary: VersionSummary) -> None:
        """Keep the summary of a version a run published (again: replaced)."""
        placeholders = ", ".join(f":{c}" for c in _VERSION_COLUMNS)
        with self._connect() as db:
            db.execute(
                f"INSERT OR REPLACE INTO versions ({', '.join(_VERSION_COLUMNS)}) "
                f"VALUES ({placeholders})",
                asdict(summary),
            )

    def versions(
        self, dataset_id: str, portal: str | None = None, limit: int | None = None
    ) -> list[VersionSummary]:
        """Summaries of the versions published of ``dataset_id`` (to one portal kind),
        newest first."""
        sql = "SELECT * FROM versions WHERE dataset_id = ?"
        params: list[object] = [dataset_id]
        if portal is not None:
            sql += " AND portal = ?"
            params.append(portal)
        sql += " ORDER BY published_at DESC, run_id DESC"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        with self._connect() as db:
            return [VersionSummary(**dict(r)) for r in db.execute(sql, params)]
