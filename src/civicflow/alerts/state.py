"""A dataset's alert state, and which changes of it deserve a message.

Two aspects are watched: the run state (``ok`` after a published or unchanged run,
``failing`` after a rejected or failed one, from the run ledger) and freshness
(``fresh`` or ``stale``, told by the freshness check). A message goes out when a state
differs from the last one ALERTED, so a second identical failure sends nothing.

The last alerted state is kept per dataset, aspect and channel in a small table of the
ledger's SQLite file (its own connection; ``civicflow.ledger`` does not know it). Per
channel, because one channel may be down while another delivered: only the one that
failed is retried on the next run, nobody gets the same message twice.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from civicflow.ledger import Ledger, RunRecord
from civicflow.privatefs import FILE_MODE, private_dir

Aspect = Literal["run", "freshness"]
State = Literal["ok", "failing", "fresh", "stale"]
Change = Literal["failing", "recovered", "stale", "fresh"]

#: the state a dataset is assumed to be in before anything was alerted: a first failing
#: run (or a first stale check) alerts, a first good run says nothing
BASELINE: dict[Aspect, State] = {"run": "ok", "freshness": "fresh"}

#: (before, after) -> the change a steward is told about
CHANGES: dict[tuple[State, State], Change] = {
    ("ok", "failing"): "failing",
    ("failing", "ok"): "recovered",
    ("fresh", "stale"): "stale",
    ("stale", "fresh"): "fresh",
}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS alert_state (
    dataset_id TEXT NOT NULL,
    aspect TEXT NOT NULL CHECK (aspect IN ('run', 'freshness')),
    channel TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('ok', 'failing', 'fresh', 'stale')),
    run_id TEXT,
    alerted_at TEXT NOT NULL,
    PRIMARY KEY (dataset_id, aspect, channel)
);
"""


def run_state(record: RunRecord) -> State:
    """``ok`` for a published or unchanged run, ``failing`` for a rejected or failed one."""
    return "ok" if record.outcome in ("published", "unchanged") else "failing"


def freshness_state(stale: bool | None) -> State | None:
    """``stale``/``fresh``; None when freshness is unknown (no date to judge by)."""
    return None if stale is None else ("stale" if stale else "fresh")


def current_run_state(ledger: Ledger, dataset_id: str) -> State | None:
    """The run state after the dataset's latest run in the ledger (None: never ran)."""
    last = ledger.last(dataset_id)
    return run_state(last) if last is not None else None


def failing_runs_since(ledger: Ledger, dataset_id: str, since: datetime) -> int:
    """How many rejected or failed runs the dataset had since ``since`` (for a recovery)."""
    return sum(
        1 for r in ledger.runs(dataset_id, since=since) if r.outcome in ("rejected", "failed")
    )


@dataclass(frozen=True)
class Alerted:
    """The last state a channel was told about."""

    state: State
    run_id: str | None
    alerted_at: datetime


@dataclass(frozen=True)
class Transition:
    """A change of state worth a message."""

    aspect: Aspect
    before: State
    after: State

    @property
    def change(self) -> Change:
        return CHANGES[(self.before, self.after)]


def transition(aspect: Aspect, last: Alerted | None, now: State | None) -> Transition | None:
    """The change from the last alerted state to ``now``, or None (same state, unknown)."""
    before = last.state if last is not None else BASELINE[aspect]
    if now is None or (before, now) not in CHANGES:
        return None
    return Transition(aspect, before, now)


class AlertStore:
    """Last alerted state per (dataset, aspect, channel), in the ledger's SQLite file."""

    def __init__(self, path: Path):
        self.path = path
        private_dir(path.parent)
        with self._connect() as db:
            db.executescript(_SCHEMA)
        os.chmod(path, FILE_MODE)  # the same file as the ledger: private report paths

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=30)
        try:
            with db:
                yield db
        finally:
            db.close()

    def last(self, dataset_id: str, aspect: Aspect, channel: str) -> Alerted | None:
        with self._connect() as db:
            row = db.execute(
                "SELECT state, run_id, alerted_at FROM alert_state "
                "WHERE dataset_id = ? AND aspect = ? AND channel = ?",
                (dataset_id, aspect, channel),
            ).fetchone()
        if row is None:
            return None
        return Alerted(row[0], row[1], datetime.fromisoformat(row[2]))

    def advance(
        self,
        dataset_id: str,
        aspect: Aspect,
        channel: str,
        state: State,
        run_id: str | None = None,
        at: datetime | None = None,
    ) -> None:
        """Record that ``channel`` was told ``state`` (call only after it was delivered)."""
        when = (at or datetime.now(UTC)).astimezone(UTC).isoformat()
        with self._connect() as db:
            db.execute(
                "INSERT OR REPLACE INTO alert_state "
                "(dataset_id, aspect, channel, state, run_id, alerted_at) VALUES (?, ?, ?, ?, ?, ?)",
                (dataset_id, aspect, channel, state, run_id, when),
            )
