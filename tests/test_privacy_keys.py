"""The hash key: from the environment or a Prefect Secret block, refused when missing,
and never visible in logs, reports, reprs or exceptions."""

from __future__ import annotations

import hashlib
import hmac
import logging
import pickle
from pathlib import Path

import pytest

from civicflow.privacy import (
    ENV_VAR,
    SECRET_BLOCK,
    PrivacyError,
    check_ready,
    protect,
    resolve_hash_key,
)
from civicflow.privacy.keys import HashKey
from civicflow.settings import Settings
from civicflow.sources import extract
from civicflow.spec import find_dataset

PROJECT = Path(__file__).resolve().parents[1]
SECRET = "S3cret-civicflow-test-key-7f3a9c"


def settings_for(tmp_path: Path, env: dict[str, str]) -> Settings:
    return Settings(project_dir=PROJECT, var_dir=tmp_path / "var", env=env)


def test_key_object_never_shows_its_value() -> None:
    key = HashKey(SECRET, f"env {ENV_VAR}")
    assert SECRET not in repr(key) and SECRET not in str(key) and SECRET not in f"{key!r} {key}"
    with pytest.raises(TypeError):
        pickle.dumps(key)
    with pytest.raises(PrivacyError) as err:
        HashKey("short-key", "env")
    assert "short-key" not in str(err.value) and "9 bytes" in str(err.value)


def test_hash_is_hmac_sha256_of_the_value_with_the_env_key(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, {ENV_VAR: SECRET})
    key = resolve_hash_key(settings)
    assert key is not None and key.origin == f"env {ENV_VAR}"
    assert (
        key.hexdigest("1M8GDM9AXKP042788")
        == hmac.new(SECRET.encode(), b"1M8GDM9AXKP042788", hashlib.sha256).hexdigest()
    )


def test_missing_key_is_refused_before_any_work(prefect_harness: None, tmp_path: Path) -> None:
    """No env var and no Secret block: check_ready fails naming both, and a run stops there."""
    from civicflow.ledger import Ledger
    from civicflow.pipeline import run_dataset

    settings = settings_for(tmp_path, {})
    spec = find_dataset(settings.datasets_dir, "parking_citations")
    with pytest.raises(PrivacyError) as err:
        check_ready(spec, settings)
    message = str(err.value)
    assert ENV_VAR in message and SECRET_BLOCK in message and "vin" in message

    with pytest.raises(PrivacyError):
        run_dataset(settings, "parking_citations")
    assert not (settings.raw_dir / "parking_citations").exists(), (
        "nothing may be extracted without a key"
    )
    assert not settings.published_dir.exists() or not any(settings.published_dir.iterdir())
    last = Ledger(settings.ledger_path).last("parking_citations")
    assert last is not None and last.outcome == "failed" and ENV_VAR in last.reason


def test_key_from_a_prefect_secret_block(prefect_harness: None, tmp_path: Path) -> None:
    from prefect.blocks.system import Secret

    Secret(value=SECRET).save(SECRET_BLOCK, overwrite=True)
    try:
        key = resolve_hash_key(settings_for(tmp_path, {}))
        assert key is not None and SECRET_BLOCK in key.origin and SECRET not in repr(key)
        assert key.hexdigest("x") == HashKey(SECRET, "reference").hexdigest("x")
        # The environment wins over the block.
        env_key = resolve_hash_key(settings_for(tmp_path, {ENV_VAR: "another-key-0123456789"}))
        assert env_key is not None and env_key.origin == f"env {ENV_VAR}"
    finally:
        Secret.delete(SECRET_BLOCK)
    assert resolve_hash_key(settings_for(tmp_path, {})) is None


def test_key_never_appears_in_logs_reports_or_output(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    from civicflow.pipeline import protect_stage

    settings = settings_for(tmp_path, {ENV_VAR: SECRET})
    spec = find_dataset(settings.datasets_dir, "parking_citations")
    frame = extract(spec, settings, "key-run").frame
    # Give the hashed column values so the key is really used.
    frame["vin"] = frame["ticket_number"].radd("1M8GDM9AX")
    caplog.set_level(logging.DEBUG)
    result = protect_stage(spec, frame, settings, "key-run")
    assert result.frame["vin"].str.fullmatch(r"[0-9a-f]{64}").all()
    report_files = list((settings.reports_dir / spec.id).glob("*.privacy.json"))
    assert report_files, "the privacy report is written next to the validation report"
    out, err = capsys.readouterr()
    texts = [
        caplog.text,
        out,
        err,
        repr(result),
        result.report.summary(),
        str(result.report.metadata_notes()),
        repr(settings),
    ]
    texts += [p.read_text() for p in report_files]
    assert all(SECRET not in t for t in texts)
    assert SECRET not in repr(protect(spec, frame, settings))
