"""How current each dataset's data is: the age of its newest record against its frequency.

One implementation for ``civicflow status``, freshness alerts and the scorecard's
timeliness check. Age is read from the data (the latest value of the spec's record
date in the published Parquet copy), so re-publishing old data does not make it fresh;
a dataset with no record date is as old as its source says it is (the file's
modification time, an HTTP Last-Modified, as the ledger recorded them), or else as old
as its last published version.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Literal

import pyarrow.compute as pc
import pyarrow.parquet as pq

from civicflow import published
from civicflow.ledger import Ledger
from civicflow.published import Manifest
from civicflow.settings import Settings
from civicflow.spec.models import DatasetSpec

#: the period each declared frequency promises (the scorecard allows ``grace`` times it)
PERIOD_DAYS = {"daily": 1, "weekly": 7, "monthly": 31, "quarterly": 92, "annually": 366}
#: when a dataset counts as stale for status and alerts: its period plus a working margin
#: (a late drop, a weekend); irregular and static datasets are never stale
STALE_AFTER_DAYS = {"daily": 2, "weekly": 9, "monthly": 35, "quarterly": 100, "annually": 400}

State = Literal["fresh", "stale", "unknown"]


@dataclass(frozen=True)
class RecordDate:
    """The latest record date in a published version (or when it was published), or why
    there is none."""

    field: str | None
    latest: datetime | None
    problem: str | None = None
    #: "record": read from the data; "source": the source's last-modified time;
    #: "published": the version's publish time (no record date, source silent)
    basis: Literal["record", "source", "published"] = "record"


@dataclass(frozen=True)
class Freshness:
    """A dataset's data age against its update frequency."""

    frequency: str
    state: State
    #: public text: frequency, the date the age is read from and why (never a row value
    #: other than that date)
    detail: str
    latest: datetime | None = None
    age: timedelta | None = None
    #: how old the data may get; None: never stale (irregular, static)
    allowed: timedelta | None = None

    @property
    def stale(self) -> bool:
        return self.state == "stale"

    @property
    def stale_if_known(self) -> bool | None:
        """Stale or not, None when there is no date to judge by (what alerts take)."""
        return None if self.state == "unknown" else self.stale


def allowance(frequency: str) -> timedelta | None:
    """How old a dataset of this frequency may get before it is stale (None: never)."""
    days = STALE_AFTER_DAYS.get(frequency)
    return None if days is None else timedelta(days=days)


def _as_utc(value: object) -> datetime | None:
    if isinstance(value, datetime):
        # Naive timestamps are local to the source; at day-scale frequencies the hours
        # between local time and UTC do not change the verdict.
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    return None


def latest_record(spec: DatasetSpec, manifest: Manifest) -> RecordDate:
    """max(record date field) over the published Parquet (one column read, vectorised)."""
    name = spec.record_date_field
    if name is None:
        return RecordDate(None, None, "no record date field (declare record_date in the spec)")
    if name not in manifest.columns:
        return RecordDate(name, None, f"the published version has no {name} column")
    if not manifest.path.is_file():
        return RecordDate(name, None, "the published file is missing")
    column = pq.read_table(manifest.path, columns=[name]).column(name)
    latest = _as_utc(pc.max(column).as_py())
    if latest is None:
        return RecordDate(name, None, f"{name} is empty in every published row")
    return RecordDate(name, latest)


def data_date(
    spec: DatasetSpec, manifest: Manifest, source_modified: str | None = None
) -> RecordDate:
    """The date a dataset's age is read from: its latest record, or, for a dataset with no
    record date field, when the source last changed (``source_modified``) if it said so,
    else when its live version was published."""
    found = latest_record(spec, manifest)
    if spec.record_date_field is not None:
        return found
    modified = _parse(source_modified)
    if modified is not None:
        return RecordDate(None, modified, basis="source")
    when = _parse(manifest.published_at)
    problem = None if when else "the live version's publish time is unreadable"
    return RecordDate(None, when, problem, basis="published")


def _parse(text: str | None) -> datetime | None:
    try:
        return _as_utc(datetime.fromisoformat(text)) if text else None
    except ValueError:
        return None


def days_text(delta: timedelta) -> str:
    return f"{delta.total_seconds() / 86400:.1f} days"


def judge(
    frequency: str, found: RecordDate | None, now: datetime, allowed: timedelta | None
) -> Freshness:
    """Fresh, stale or unknown: ``found``'s age at ``now`` against ``allowed``.

    ``found`` None: never published. Unknown (no date to read, or a date in the future)
    is never fresh; ``allowed`` None (irregular, static) is never stale.
    """
    freq = frequency
    if found is None:
        return Freshness(freq, "unknown", f"{freq}: never published")
    if found.latest is None:
        why = found.problem or "no date"
        return Freshness(freq, "unknown", f"{freq}: cannot tell how current the data is: {why}")
    seen = {
        "published": f"last published {found.latest:%Y-%m-%d}",
        "source": f"source last modified {found.latest:%Y-%m-%d}",
        "record": f"latest record {found.latest:%Y-%m-%d} ({found.field})",
    }[found.basis]
    age = now - found.latest
    if allowed is None:  # irregular / static: current as published
        return Freshness(freq, "fresh", f"{freq}: {seen}", found.latest, age)
    if age < timedelta(0):
        text = f"{freq}: {seen} is in the future; the record dates are wrong"
        return Freshness(freq, "unknown", text, found.latest, age, allowed)
    ok = age <= allowed
    detail = f"{freq}: {seen}, {days_text(age)} old" + (
        "" if ok else f", more than {days_text(allowed)}"
    )
    return Freshness(freq, "fresh" if ok else "stale", detail, found.latest, age, allowed)


def dataset_freshness(
    settings: Settings, spec: DatasetSpec, now: datetime | None = None
) -> Freshness:
    """How current ``spec``'s live data is at ``now`` (default: the current time), from its
    latest published Parquet copy and the status allowance for its update frequency."""
    now = now or datetime.now(UTC)
    manifest = published.latest(settings, spec.id)
    found = None
    if manifest is not None:
        found = data_date(spec, manifest, Ledger(settings.ledger_path).source_modified(spec.id))
    frequency = str(spec.update_frequency)
    return judge(frequency, found, now, allowance(frequency))
