"""Shared fixtures. Server fixtures live in tests/fixtures/ and are loaded as plugins."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from civicflow.settings import Settings, load_settings

# Speed targets live in benchmarks/, not in tests: no per-example deadline anywhere, so a
# busy 2-core machine cannot fail a property test by being slow.
settings.register_profile("civicflow", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("civicflow")

PROJECT_DIR = Path(__file__).resolve().parents[1]

# No telemetry or update checks from Prefect: this machine has no network.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW", "ignore")
# A CLI call starts Prefect's temporary server; on a busy 2-core machine it can take longer
# than Prefect's 20 s default to come up.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
# CLI calls in tests never run into a developer's live `make run` server on port 4200;
# a test that wants the project's server sets PREFECT_API_URL (or this) itself.
os.environ.setdefault("CIVICFLOW_PROJECT_SERVER", "0")

pytest_plugins = [
    "tests.fixtures.browser",
    "tests.fixtures.portal",
    "tests.fixtures.prefect",
    "tests.fixtures.postgres",
    "tests.socrata.fixtures",
]


@pytest.fixture(scope="session")
def project_dir() -> Path:
    return PROJECT_DIR


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings over a copy of the project's specs and suites (a test may edit them),
    with runtime state in the test's own var/."""
    root = tmp_path / "project"
    for name in ("datasets", "expectations"):
        shutil.copytree(PROJECT_DIR / name, root / name)
    shutil.copy(PROJECT_DIR / "pyproject.toml", root / "pyproject.toml")
    monkeypatch.setenv("CIVICFLOW_PROJECT_DIR", str(root))
    monkeypatch.setenv("CIVICFLOW_VAR_DIR", str(tmp_path / "var"))
    return load_settings()
