"""The scheduled freshness check: each dataset's data age against its update frequency,
its stewards told once when it goes stale and once when it is fresh again.

``civicflow status`` and the scorecard judge freshness when someone looks; this is what
runs on a schedule (the ``freshness-hourly`` deployment, ``flows/freshness.py``), so a
dataset whose source stopped updating alerts without anyone looking.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from civicflow.alerts import describe_age, notify_freshness
from civicflow.freshness import dataset_freshness
from civicflow.settings import Settings
from civicflow.spec import load_all
from civicflow.spec.models import DatasetSpec


@dataclass(frozen=True)
class Checked:
    """One dataset's freshness at the check, and the alerts it caused."""

    dataset_id: str
    state: str
    #: public text: frequency and the date the age is read from (no row value)
    detail: str
    sent: list[str] = field(default_factory=list)


def check_freshness(
    settings: Settings,
    specs: dict[str, DatasetSpec] | None = None,
    now: datetime | None = None,
) -> list[Checked]:
    """Judge every dataset (default: all in datasets/) at ``now`` and alert on changes."""
    specs = specs if specs is not None else load_all(settings.datasets_dir)
    checked = []
    for spec in specs.values():
        found = dataset_freshness(settings, spec, now)
        sent = notify_freshness(settings, spec, found.stale_if_known, describe_age(found.age))
        checked.append(Checked(spec.id, found.state, found.detail, sent))
    return checked
