"""When each dataset runs: its spec's ``schedule``, else a default from its update frequency.

One answer for the deployments (``prefect.yaml``, ``civicflow deploy``) and for
``civicflow status``'s next run, computed without asking Prefect.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from cronsim import CronSim

from civicflow.spec.models import DatasetSpec

DEFAULT_TIMEZONE = "America/Los_Angeles"

#: a quiet time for each frequency (after the night's source drops, before office hours)
DEFAULT_CRON = {
    "daily": "30 2 * * *",
    "weekly": "30 3 * * 1",
    "monthly": "0 4 2 * *",
    "quarterly": "0 4 2 1,4,7,10 *",
    "annually": "0 4 2 1 *",
}


@dataclass(frozen=True)
class Schedule:
    """A dataset's effective schedule: a cron or an interval, in a time zone."""

    cron: str | None
    interval_minutes: int | None
    timezone: str
    active: bool

    def next_run(self, after: datetime) -> datetime | None:
        """The first run strictly after ``after`` (timezone-aware), None when paused."""
        if not self.active:
            return None
        zone = ZoneInfo(self.timezone)
        local = after.astimezone(zone)
        if self.interval_minutes is not None:
            return local + timedelta(minutes=self.interval_minutes)
        assert self.cron is not None
        return next(CronSim(self.cron, local.replace(second=0, microsecond=0)))


def effective_schedule(spec: DatasetSpec) -> Schedule | None:
    """The spec's schedule, or the default for its update frequency (None: runs only
    with ``publish-all`` or by hand, as irregular, static and produced datasets do)."""
    if spec.schedule is not None:
        s = spec.schedule
        return Schedule(s.cron, s.interval_minutes, s.timezone, s.active)
    if spec.produced_by is not None:
        return None
    cron = DEFAULT_CRON.get(str(spec.update_frequency))
    return Schedule(cron, None, DEFAULT_TIMEZONE, True) if cron else None
