"""`make test` sets up what the tests need on a fresh machine, Debian packages included."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
SCRIPT = PROJECT / "scripts" / "system-deps.sh"


def _run(**env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPT)],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_make_test_installs_system_packages_first() -> None:
    makefile = (PROJECT / "Makefile").read_text()
    test_rule = re.search(r"^test:(.*)$", makefile, re.M)
    assert test_rule is not None and "system-deps" in test_rule.group(1).split()
    assert re.search(r"^system-deps:\n\t@bash scripts/system-deps.sh$", makefile, re.M)


def test_missing_chromium_without_apt_stops_with_the_exact_command() -> None:
    result = _run(CIVICFLOW_CHROMIUM="/nonexistent/chromium", CIVICFLOW_NO_APT="1")
    assert result.returncode == 1
    assert "apt-get update && apt-get install -y --no-install-recommends chromium" in result.stderr


def test_present_packages_install_nothing_and_say_nothing(tmp_path: Path) -> None:
    fake = tmp_path / "chromium"
    fake.write_text("")
    result = _run(CIVICFLOW_CHROMIUM=str(fake), CIVICFLOW_NO_APT="1")
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
