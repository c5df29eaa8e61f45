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


#: outcomes that end a run well, and badly ("crashed": a run that died, once recorded)
OK_OUTCOMES = ("published", "unchanged")
FAILING_OUTCOMES = ("rejected", "failed", "crashed")


def run_state(record: RunRecord) -> State | None:
    """``ok`` after a published or unchanged run, ``failing`` after a rejected, failed or
    crashed one; None for any other outcome (a run still in progress says nothing yet)."""
    if record.outcome in OK_OUTCOMES:
        return "ok"
    return "failing" if record.outcome in FAILING_OUTCOMES else None


def freshness_state(stale: bool | None) -> State | None:
    """``stale``/``fresh``; None when freshness is unknown (no date to judge by)."""
    return None if stale is None else ("stale" if stale else "fresh")


def failing_streak(ledger: Ledger, record: RunRecord) -> tuple[datetime | None, int]:
    """How many failing runs came right before ``record``, and when the first began."""
    since, count = None, 0
    for run in ledger.runs(record.dataset_id, limit=500):
        if run.started_at >= record.started_at:
            continue  # ``record`` itself, or a run after it
        state = run_state(run)
        if state == "ok":
            break
        if state == "failing":
            since, count = run.started_at, count + 1
    return since, count


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
