"""Where a project lives and where its runtime state goes.

Everything runtime (raw extracts, reports, the portal database, the ledger) lives
under ``var/``, which git ignores. Environment variables override the defaults so
tests and deployments can point civicflow at their own folders and portal.

Retention (how long raw copies and reports under ``var/`` are kept) is configured here
too: ``CIVICFLOW_KEEP_RUNS`` and ``CIVICFLOW_KEEP_DAYS``; see ``civicflow.retention``.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

PROJECT_ENV = "CIVICFLOW_PROJECT_DIR"
KEEP_RUNS_ENV = "CIVICFLOW_KEEP_RUNS"
KEEP_DAYS_ENV = "CIVICFLOW_KEEP_DAYS"
# Defaults: an hourly schedule keeps at most 3 days (72 runs) of raw copies and
# reports per dataset, a nightly one its last 20 runs.
DEFAULT_KEEP_RUNS = 20
DEFAULT_KEEP_DAYS = 3.0


class SettingsError(ValueError):
    """An environment variable with a value civicflow cannot use (names the variable)."""


def _find_project_dir(start: Path) -> Path:
    """Walk up from ``start`` to the first folder holding a ``datasets/`` folder."""
    for candidate in [start, *start.parents]:
        if (candidate / "datasets").is_dir() and (candidate / "pyproject.toml").is_file():
            return candidate
    return start


def _env_number(env: dict[str, str], name: str, default: float, minimum: float) -> float:
    """A number from the environment; SettingsError naming the variable if unusable."""
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not value >= minimum:  # also refuses NaN
        raise SettingsError(f"{name}: expected a number >= {minimum:g}, got {raw!r}")
    return value


def _env_whole(env: dict[str, str], name: str, default: int, minimum: int) -> int:
    raw = env.get(name, "").strip()
    if raw and not (raw.isdigit() and int(raw) >= minimum):
        raise SettingsError(f"{name}: expected a whole number >= {minimum}, got {raw!r}")
    return int(raw) if raw else default


@dataclass(frozen=True)
class Settings:
    """Resolved paths and portal connection for one civicflow project."""

    project_dir: Path
    var_dir: Path
    portal_url: str = "http://127.0.0.1:8001"
    portal_database: str = "portal"
    # Secrets are read from the environment at use, never stored in reports.
    env: dict[str, str] = field(default_factory=dict, repr=False)
    # Retention of raw copies and reports per dataset (civicflow.retention).
    keep_runs: int = DEFAULT_KEEP_RUNS
    keep_days: float = DEFAULT_KEEP_DAYS
    # How project_dir was chosen, so "no project here" can say where it looked.
    project_origin: str = "given"

    @property
    def has_project(self) -> bool:
        return self.datasets_dir.is_dir()

    def where_looked(self) -> str:
        """Where the project was looked for, for the "no datasets/ folder" message."""
        if self.project_origin == "environment":
            return f"{PROJECT_ENV}={self.project_dir} has no datasets/ folder"
        if self.project_origin == "working directory":
            return (
                f"no datasets/ folder (beside a pyproject.toml) in {self.project_dir} or any "
                f"folder above it; run from inside a civicflow project or set {PROJECT_ENV} "
                "to its root"
            )
        return f"{self.project_dir} has no datasets/ folder"

    @property
    def datasets_dir(self) -> Path:
        return self.project_dir / "datasets"

    @property
    def expectations_dir(self) -> Path:
        return self.project_dir / "expectations"

    @property
    def metrics_dir(self) -> Path:
        return self.project_dir / "metrics"

    @property
    def raw_dir(self) -> Path:
        return self.var_dir / "raw"

    @property
    def reports_dir(self) -> Path:
        return self.var_dir / "reports"

    @property
    def published_dir(self) -> Path:
        return self.var_dir / "published"

    @property
    def ledger_path(self) -> Path:
        return self.var_dir / "ledger.db"

    @property
    def publish_concurrency(self) -> int:
        """How many datasets ``publish-all`` runs at once (CIVICFLOW_PUBLISH_CONCURRENCY)."""
        return _env_whole(self.env, "CIVICFLOW_PUBLISH_CONCURRENCY", 2, 1)

    @property
    def batch_rows(self) -> int:
        """Rows per batch of a streaming run (CIVICFLOW_BATCH_ROWS): memory holds a few."""
        return _env_whole(self.env, "CIVICFLOW_BATCH_ROWS", 50_000, 1)

    @property
    def check_workers(self) -> int:
        """Processes that validate a streaming run's batches while this one protects them
        (CIVICFLOW_CHECK_WORKERS; default 1 on two cores or more, else 0: in process)."""
        default = 1 if (os.cpu_count() or 1) >= 2 else 0
        return _env_whole(self.env, "CIVICFLOW_CHECK_WORKERS", default, 0)

    @property
    def stream_min_bytes(self) -> int:
        """Input files from this size up are run a batch at a time when their kind and
        portal can (CIVICFLOW_STREAM_MIN_BYTES, default 64 MiB; 0: every such file)."""
        return _env_whole(self.env, "CIVICFLOW_STREAM_MIN_BYTES", 64 << 20, 0)

    @property
    def spool_dir(self) -> Path:
        """A streaming run's Parquet copy while its rows are checked (private)."""
        return self.var_dir / "spool"

    @property
    def quarantine_dir(self) -> Path:
        """Bad rows held back per run (private: they hold raw source values)."""
        return self.var_dir / "quarantine"

    @property
    def site_dir(self) -> Path:
        return self.var_dir / "site"

    def private_dir(self, path: Path) -> Path:
        """``path`` created 0700, and ``var/`` itself tightened to 0700 (a var/ made by an
        older civicflow, or by hand, may be world-readable)."""
        from civicflow.privatefs import private_dir

        if self.var_dir.is_dir() and self.var_dir.stat().st_mode & stat.S_ISVTX:
            # A shared folder such as /tmp: tightening it would lock other users out.
            raise SettingsError(
                f"CIVICFLOW_VAR_DIR={self.var_dir} is a shared folder (sticky bit set); "
                "point it at a folder of civicflow's own"
            )
        private_dir(self.var_dir)
        return private_dir(path)

    def secret(self, name: str) -> str | None:
        """A secret from the environment (or None). Never log the value."""
        value = self.env.get(name)
        return value or None


def load_settings(project_dir: Path | None = None) -> Settings:
    """Settings from the environment, with the project found from the working directory.

    Raises SettingsError (naming the variable) for a retention value that is not a number.
    """
    env = dict(os.environ)
    origin = "given"
    if project_dir is None:
        if env.get(PROJECT_ENV):
            project_dir, origin = Path(env[PROJECT_ENV]), "environment"
        else:
            project_dir, origin = _find_project_dir(Path.cwd()), "working directory"
    project_dir = project_dir.resolve()
    var_dir = (
        Path(env["CIVICFLOW_VAR_DIR"]) if env.get("CIVICFLOW_VAR_DIR") else project_dir / "var"
    )
    return Settings(
        project_dir=project_dir,
        var_dir=var_dir.resolve(),
        portal_url=env.get("CIVICFLOW_PORTAL_URL", "http://127.0.0.1:8001").rstrip("/"),
        portal_database=env.get("CIVICFLOW_PORTAL_DATABASE", "portal"),
        env=env,
        keep_runs=_env_whole(env, KEEP_RUNS_ENV, DEFAULT_KEEP_RUNS, 1),
        keep_days=_env_number(env, KEEP_DAYS_ENV, DEFAULT_KEEP_DAYS, 0),
        project_origin=origin,
    )
