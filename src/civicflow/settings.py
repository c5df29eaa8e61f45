"""Where a project lives and where its runtime state goes.

Everything runtime (raw extracts, reports, the portal database, the ledger) lives
under ``var/``, which git ignores. Environment variables override the defaults so
tests and deployments can point civicflow at their own folders and portal.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


def _find_project_dir(start: Path) -> Path:
    """Walk up from ``start`` to the first folder holding a ``datasets/`` folder."""
    for candidate in [start, *start.parents]:
        if (candidate / "datasets").is_dir() and (candidate / "pyproject.toml").is_file():
            return candidate
    return start


@dataclass(frozen=True)
class Settings:
    """Resolved paths and portal connection for one civicflow project."""

    project_dir: Path
    var_dir: Path
    portal_url: str = "http://127.0.0.1:8001"
    portal_database: str = "portal"
    # Secrets are read from the environment at use, never stored in reports.
    env: dict[str, str] = field(default_factory=dict, repr=False)

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
    def site_dir(self) -> Path:
        return self.var_dir / "site"

    def secret(self, name: str) -> str | None:
        """A secret from the environment (or None). Never log the value."""
        value = self.env.get(name)
        return value or None


def load_settings(project_dir: Path | None = None) -> Settings:
    """Settings from the environment, with the project found from the working directory."""
    env = dict(os.environ)
    if project_dir is None:
        project_dir = (
            Path(env["CIVICFLOW_PROJECT_DIR"])
            if env.get("CIVICFLOW_PROJECT_DIR")
            else _find_project_dir(Path.cwd())
        )
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
    )
