"""var/ is private: folders 0700, raw copies 0400, other files 0600, umask 077 in the CLI.

Raw copies hold residents' exact addresses and names; another local user must not be
able to read them (issue 8, item 9).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from civicflow.cli import app
from civicflow.privatefs import private_dir, private_file, write_private
from civicflow.settings import load_settings
from civicflow.sources import extract
from civicflow.spec import find_dataset

PROJECT = Path(__file__).resolve().parents[1]
DATASET = "la311_service_requests"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def loose_umask() -> Iterator[None]:
    """A typical login umask (022), so only explicit modes make files private."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("CIVICFLOW_PROJECT_DIR", str(PROJECT))
    monkeypatch.setenv("CIVICFLOW_VAR_DIR", str(tmp_path / "var"))
    return load_settings()


def test_raw_copy_is_owner_read_only_in_private_folders(settings, loose_umask) -> None:
    spec = find_dataset(settings.datasets_dir, DATASET)
    ext = extract(spec, settings, "20261123T100000Z-aaaaaa")
    assert mode(ext.raw_path) == 0o400
    assert mode(ext.raw_path.parent) == 0o700
    assert mode(settings.raw_dir) == 0o700
    assert mode(settings.var_dir) == 0o700
    # No temporary file is left beside the copy.
    assert [p.name for p in ext.raw_path.parent.iterdir()] == [ext.raw_path.name]


def test_an_existing_world_readable_var_is_tightened(settings, loose_umask) -> None:
    settings.var_dir.mkdir(mode=0o755)
    os.chmod(settings.var_dir, 0o755)
    spec = find_dataset(settings.datasets_dir, DATASET)
    extract(spec, settings, "20261123T100000Z-bbbbbb")
    assert mode(settings.var_dir) == 0o700


def test_private_dir_creates_every_missing_parent_0700(tmp_path, loose_umask) -> None:
    os.chmod(tmp_path, 0o755)
    leaf = private_dir(tmp_path / "a" / "b" / "c")
    assert [mode(p) for p in (tmp_path / "a", tmp_path / "a" / "b", leaf)] == [0o700] * 3
    assert mode(tmp_path) == 0o755  # folders that already existed above are not changed
    os.chmod(leaf, 0o755)
    private_dir(leaf)
    assert mode(leaf) == 0o700


def test_private_write_is_atomic_and_0600(tmp_path, loose_umask) -> None:
    path = tmp_path / "reports" / "x.json"
    write_private(path, '{"a": 1}')
    assert path.read_text() == '{"a": 1}'
    assert mode(path) == 0o600 and mode(path.parent) == 0o700

    # A failed write leaves the previous file whole and no temporary file behind.
    with pytest.raises(RuntimeError), private_file(path) as fh:
        fh.write(b"half")
        raise RuntimeError("disk full")
    assert path.read_text() == '{"a": 1}'
    assert [p.name for p in path.parent.iterdir()] == ["x.json"]


def test_private_file_is_private_before_it_is_complete(tmp_path, loose_umask) -> None:
    path = tmp_path / "raw.csv"
    with private_file(path, 0o400) as fh:
        (tmp,) = [p for p in tmp_path.iterdir() if p.name.endswith(".part")]
        assert mode(tmp) == 0o600  # never world-readable, even half-written
        fh.write(b"a,b\n")
    assert mode(path) == 0o400


def test_cli_commands_run_with_umask_077(tmp_path, monkeypatch, loose_umask) -> None:
    """Files made by code outside these helpers (libraries, the portal process) are private."""
    seen: list[int] = []

    def record_umask() -> None:
        current = os.umask(0)
        os.umask(current)
        seen.append(current)

    import civicflow.cli.check as check_module

    real = check_module.collect_problems

    def spy(settings):  # type: ignore[no-untyped-def]
        record_umask()
        return real(settings)

    monkeypatch.setattr(check_module, "collect_problems", spy)
    monkeypatch.setenv("CIVICFLOW_PROJECT_DIR", str(PROJECT))
    result = CliRunner().invoke(app, ["check"])
    assert result.exit_code == 0, result.output
    assert seen == [0o077]
    # The test process gets its own umask back when the command ends.
    current = os.umask(0o022)
    assert current == 0o022


def exposed_paths(root: Path) -> list[str]:
    """Every path under ``root`` (itself included) that group or others may use."""
    return sorted(f"{p} {mode(p):o}" for p in [root, *root.rglob("*")] if mode(p) & 0o077)


def test_a_publish_run_leaves_nothing_under_var_reachable_by_others(
    datasette_server, settings, monkeypatch, loose_umask
) -> None:
    """A real run called as a library (login umask 022, no CLI): var/ is 0700, so nothing
    in it is reachable by another user, and the raw copies are private file by file."""
    from civicflow.pipeline import run_dataset

    for key, value in datasette_server.env.items():
        monkeypatch.setenv(key, value)
    outcome = run_dataset(load_settings(), "lax_passenger_traffic")
    assert outcome.outcome in ("published", "unchanged"), outcome.reason
    assert mode(settings.var_dir) == 0o700
    # What civicflow itself writes is private file by file, whatever the umask (the
    # portal process's own files are behind var/'s 0700).
    for folder in (settings.raw_dir, settings.reports_dir, settings.published_dir):
        assert exposed_paths(folder) == []
    assert exposed_paths(settings.ledger_path) == []


def test_a_shared_var_dir_is_refused_not_locked(tmp_path, monkeypatch) -> None:
    """CIVICFLOW_VAR_DIR=/tmp must not chmod /tmp to 0700 (it would lock other users out)."""
    from civicflow.settings import SettingsError

    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o1777)
    monkeypatch.setenv("CIVICFLOW_PROJECT_DIR", str(PROJECT))
    monkeypatch.setenv("CIVICFLOW_VAR_DIR", str(shared))
    settings = load_settings()
    with pytest.raises(SettingsError, match="CIVICFLOW_VAR_DIR=.*shared folder"):
        settings.private_dir(settings.raw_dir)
    assert mode(shared) == 0o1777 and not settings.raw_dir.exists()


def test_flows_run_with_umask_077(loose_umask, monkeypatch) -> None:
    """Deployments start flows in a worker, not through the CLI: the flow sets it."""
    from flows._common import flow_settings

    monkeypatch.setenv("CIVICFLOW_PROJECT_DIR", str(PROJECT))
    flow_settings()
    current = os.umask(0o022)
    assert current == 0o077
