"""Synthetic 311 files (issue 13 item 1): deterministic, distinct keys, real distributions,
and a file civicflow's own extract and checks accept."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from civicflow import synth
from civicflow.cli import app
from civicflow.settings import Settings, load_settings
from civicflow.spec import DatasetSpec, find_dataset

PROJECT = Path(__file__).resolve().parents[1]
LA311 = "la311_service_requests"
FMT = "%m/%d/%Y %I:%M:%S %p"


@pytest.fixture(scope="module")
def settings() -> Settings:
    return load_settings(PROJECT)


@pytest.fixture(scope="module")
def spec(settings: Settings) -> DatasetSpec:
    return find_dataset(settings.datasets_dir, LA311)


@pytest.fixture(scope="module")
def real() -> pd.DataFrame:
    return pd.read_csv(
        PROJECT / "data" / LA311 / "MyLA311_Service_Request_Data_2017_Subset.csv",
        dtype=str,
        keep_default_na=False,
    )


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory, settings: Settings, spec: DatasetSpec):
    path = tmp_path_factory.mktemp("synth") / "la311.csv"
    # more rows than one chunk, so keys and offsets continue across chunks
    synth.generate(spec, settings, synth.CHUNK_ROWS + 50_000, seed=11, out=path)
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_same_seed_same_file_other_seed_other_file(
    tmp_path: Path, settings: Settings, spec: DatasetSpec
) -> None:
    a, b, c = (tmp_path / n for n in ("a.csv", "b.csv", "c.csv"))
    synth.generate(spec, settings, 5_000, seed=1, out=a)
    synth.generate(spec, settings, 5_000, seed=1, out=b)
    synth.generate(spec, settings, 5_000, seed=2, out=c)
    assert _sha(a) == _sha(b) != _sha(c)


def test_keys_are_distinct_and_new(generated: pd.DataFrame, real: pd.DataFrame) -> None:
    keys = generated["SRNumber"]
    assert keys.is_unique and keys.str.fullmatch(r"1-\d+").all()
    assert not set(keys) & set(real["SRNumber"])


def test_rows_are_not_the_bundled_rows_repeated(generated: pd.DataFrame) -> None:
    without_key = generated.drop(columns=["SRNumber"])
    assert without_key.duplicated().mean() < 0.01


def test_columns_and_shares_follow_the_bundled_file(
    generated: pd.DataFrame, real: pd.DataFrame
) -> None:
    assert list(generated.columns) == list(real.columns)
    for column in ("RequestType", "Owner", "RequestSource", "CD"):
        want = real[column].value_counts(normalize=True)
        got = generated[column].value_counts(normalize=True).reindex(want.index, fill_value=0)
        assert (got - want).abs().max() < 0.01, column
    # missing coordinates keep their share
    assert abs((generated["Latitude"] == "").mean() - (real["Latitude"] == "").mean()) < 0.01


def test_dates_spread_over_a_year_and_each_rows_time_to_close_is_kept(
    generated: pd.DataFrame, real: pd.DataFrame
) -> None:
    for column in ("CreatedDate", "UpdatedDate", "ServiceDate", "ClosedDate"):
        values = generated.loc[generated[column] != "", column]
        assert values.str.fullmatch(synth.pattern_of(FMT).pattern).all(), column
    created = pd.to_datetime(generated["CreatedDate"], format=FMT)
    real_created = pd.to_datetime(real["CreatedDate"], format=FMT)
    assert created.max() <= real_created.max()
    assert (created.max() - created.min()).days >= 360
    assert created.dt.month.nunique() == 12

    def days_to_close(frame: pd.DataFrame) -> pd.Series:
        closed = pd.to_datetime(frame["ClosedDate"].replace("", None), format=FMT)
        return (closed - pd.to_datetime(frame["CreatedDate"], format=FMT)).dt.total_seconds()

    got, want = days_to_close(generated).dropna(), days_to_close(real).dropna()
    for q in (0.25, 0.5, 0.9):
        assert abs(got.quantile(q) - want.quantile(q)) <= max(0.05 * abs(want.quantile(q)), 600)
    # the rare bad rows keep their rate: closed before created
    assert abs((got < 0).mean() - (want < 0).mean()) < 0.002


def test_civicflows_extract_and_checks_accept_it(
    tmp_path: Path, settings: Settings, spec: DatasetSpec
) -> None:
    from dataclasses import replace

    from civicflow.quality import validate
    from civicflow.sources import extract

    settings = replace(settings, var_dir=tmp_path / "var")
    path = synth.generate(spec, settings, 20_000, seed=5, out=tmp_path / "g.csv")
    ext = extract(spec, settings, "synth-test", source_path=path)
    assert ext.rows == 20_000
    report = validate(spec, ext, settings.expectations_dir)
    assert report.passed, report.summary()


def test_the_cli_writes_it_and_names_bad_input(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("CIVICFLOW_PROJECT_DIR", str(PROJECT))
    monkeypatch.setenv("CIVICFLOW_VAR_DIR", str(tmp_path / "var"))
    runner = CliRunner()
    out = tmp_path / "x.csv"
    args = ["bench", "generate", "--dataset", LA311, "--rows", "1000", "--seed", "4"]
    result = runner.invoke(app, [*args, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "wrote 1,000 rows" in result.output
    assert len(pd.read_csv(out, dtype=str)) == 1000
    bad = runner.invoke(app, ["bench", "generate", "--dataset", "performance_metrics"])
    assert bad.exit_code == 2
    assert "performance_metrics" in bad.output
