"""Retention of private run state: raw copies and reports are kept for a while, then deleted.

Every run writes ``var/raw/<id>/<run-id>.<ext>`` and ``var/reports/<id>/<run-id>*.json``
(and, when it held bad rows back, ``var/quarantine/<id>/<run-id>.csv``); an hourly
schedule would fill the disk. A run's files are kept while the run is one
of the newest ``keep_runs`` runs of its dataset **or** younger than ``keep_days``
days, and deleted once it is neither. The files of the run behind the live published
version are never deleted, whatever their age: they are the evidence for what
residents see.

Runs are recognised by their id (``YYYYMMDDTHHMMSSZ-<hex>``, see
``pipeline.new_run_id``), which also dates them; other files are left alone, except
temporary ``*.part`` files of writes that died more than a day ago.
"""

from __future__ import annotations

import contextlib
import re
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from civicflow.settings import Settings
from civicflow.spec.models import DatasetSpec, RetentionSpec

RUN_FILE = re.compile(r"^(?P<run>(?P<stamp>\d{8}T\d{6}Z)-[0-9a-f]+)\.")
STALE_PART_AGE = timedelta(days=1)

__all__ = [
    "PruneResult",
    "RetentionPolicy",
    "plan_prune",
    "prune_all",
    "prune_dataset",
    "state_dataset_ids",
]


@dataclass(frozen=True)
class RetentionPolicy:
    """Keep a run while it is among the newest ``keep_runs`` or younger than ``keep_days``."""

    keep_runs: int
    keep_days: float

    @classmethod
    def for_dataset(cls, settings: Settings, spec: DatasetSpec | None = None) -> RetentionPolicy:
        """The project's policy (environment), overridden by a spec's ``retention`` if any."""
        override: RetentionSpec | None = spec.retention if spec else None
        runs = override.keep_runs if override else None
        days = override.keep_days if override else None
        return cls(
            keep_runs=settings.keep_runs if runs is None else runs,
            keep_days=settings.keep_days if days is None else days,
        )

    def describe(self) -> str:
        return f"newest {self.keep_runs} runs or {self.keep_days:g} days"


@dataclass
class PruneResult:
    """What pruning one dataset deleted (or, with ``dry_run``, would delete)."""

    dataset_id: str
    policy: RetentionPolicy
    dry_run: bool
    files: list[Path] = field(default_factory=list)
    bytes: int = 0
    runs_deleted: int = 0
    runs_kept: int = 0
    protected: list[str] = field(default_factory=list)

    def summary(self) -> str:
        verb = "would delete" if self.dry_run else "deleted"
        live = f"; live version's run {', '.join(self.protected)} kept" if self.protected else ""
        return (
            f"{self.dataset_id}: {verb} {len(self.files)} files ({self.bytes:,} bytes) "
            f"of {self.runs_deleted} runs, kept {self.runs_kept} runs "
            f"({self.policy.describe()}){live}"
        )


def _state_dirs(settings: Settings) -> tuple[Path, ...]:
    """Folders holding one sub-folder of run files per dataset."""
    # var/quarantine is quality.quarantine's folder (its quarantine_path)
    return (settings.raw_dir, settings.reports_dir, settings.quarantine_dir)


def state_dataset_ids(settings: Settings) -> list[str]:
    """Datasets with raw copies, reports or quarantined rows under var/ (including ones
    whose spec is gone)."""
    ids: set[str] = set()
    for folder in _state_dirs(settings):
        if folder.is_dir():
            ids.update(p.name for p in folder.iterdir() if p.is_dir())
    return sorted(ids)


def live_runs(settings: Settings, dataset_id: str) -> set[str]:
    """Runs behind what is live: the last ``published`` run and the latest Parquet copy's.

    Both are kept: after a failure between the portal swap and the Parquet write they
    can differ, and each is evidence for a version someone reads.
    """
    from civicflow import published
    from civicflow.ledger import Ledger

    runs: set[str] = set()
    manifest = published.latest(settings, dataset_id)
    if manifest is not None:
        runs.add(manifest.run_id)
    if settings.ledger_path.is_file():  # never create a ledger just to read it
        last = Ledger(settings.ledger_path).last(dataset_id, "published")
        if last is not None:
            runs.add(last.run_id)
    return runs


def _run_files(settings: Settings, dataset_id: str) -> tuple[dict[str, list[Path]], list[Path]]:
    """Files of each run id, and temporary files, in the dataset's state folders."""
    by_run: dict[str, list[Path]] = defaultdict(list)
    parts: list[Path] = []
    for folder in (d / dataset_id for d in _state_dirs(settings)):
        if not folder.is_dir():
            continue
        for path in folder.iterdir():
            if not path.is_file():
                continue
            if path.name.endswith(".part"):
                parts.append(path)
            elif match := RUN_FILE.match(path.name):
                by_run[match["run"]].append(path)
    return by_run, parts


def _run_time(run_id: str) -> datetime:
    stamp = RUN_FILE.match(run_id + ".")
    assert stamp is not None  # only ids matched by RUN_FILE get here
    return datetime.strptime(stamp["stamp"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)


def plan_prune(
    settings: Settings,
    dataset_id: str,
    policy: RetentionPolicy | None = None,
    now: datetime | None = None,
) -> PruneResult:
    """Which files pruning ``dataset_id`` deletes now; deletes nothing."""
    policy = policy or RetentionPolicy.for_dataset(settings, _spec_or_none(settings, dataset_id))
    now = now or datetime.now(UTC)
    by_run, parts = _run_files(settings, dataset_id)
    newest_first = sorted(by_run, reverse=True)  # run ids sort by time
    protected = live_runs(settings, dataset_id)
    cutoff = now - timedelta(days=policy.keep_days)
    result = PruneResult(dataset_id, policy, dry_run=True)
    for rank, run_id in enumerate(newest_first):
        if run_id in protected:
            result.protected.append(run_id)
            result.runs_kept += 1
        elif rank < policy.keep_runs or _run_time(run_id) >= cutoff:
            result.runs_kept += 1
        else:
            result.runs_deleted += 1
            result.files.extend(sorted(by_run[run_id]))
    stale_before = (now - STALE_PART_AGE).timestamp()
    result.files.extend(sorted(p for p in parts if _mtime(p) < stale_before))
    result.bytes = sum(_size(p) for p in result.files)
    return result


def prune_dataset(
    settings: Settings,
    dataset_id: str,
    dry_run: bool = False,
    policy: RetentionPolicy | None = None,
    now: datetime | None = None,
) -> PruneResult:
    """Delete the raw copies and reports of ``dataset_id`` that retention no longer keeps.

    Safe to call at the end of every publish run: the newest run (the caller's) and the
    run behind the live version are always kept, and a file another run deletes first
    is skipped.
    """
    result = plan_prune(settings, dataset_id, policy, now)
    result.dry_run = dry_run
    if not dry_run:
        for path in result.files:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
    return result


def prune_all(settings: Settings, dry_run: bool = False) -> list[PruneResult]:
    """Prune every dataset that has state under var/."""
    return [prune_dataset(settings, i, dry_run) for i in state_dataset_ids(settings)]


def _spec_or_none(settings: Settings, dataset_id: str) -> DatasetSpec | None:
    """The dataset's spec for a per-dataset override; None if it is gone or broken
    (pruning then uses the project's policy rather than failing a publish run)."""
    from civicflow.spec import SpecError, find_dataset

    try:
        return find_dataset(settings.datasets_dir, dataset_id)
    except SpecError:
        return None


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:  # its writer finished (renamed it) meanwhile
        return float("inf")


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0
