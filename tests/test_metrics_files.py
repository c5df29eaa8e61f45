"""Every file in metrics/ parses; schemas are in sync; broken references name file, line and key."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from civicflow.metrics import check_files, load_metrics
from civicflow.metrics.loader import load_attestations, load_certification, load_kpi
from civicflow.metrics.models import Kpi
from civicflow.metrics.schemas import SCHEMAS, render
from civicflow.settings import Settings
from civicflow.spec import SpecError

PROJECT = Path(__file__).resolve().parents[1]
METRICS = PROJECT / "metrics"
FILES = sorted(p for p in METRICS.rglob("*") if p.is_file())


@pytest.mark.parametrize("path", FILES, ids=[str(p.relative_to(METRICS)) for p in FILES])
def test_every_metrics_file_parses(path: Path) -> None:
    rel = path.relative_to(METRICS)
    if rel.parts[0] == "kpis":
        kpi = load_kpi(path)
        assert kpi.id == path.stem
        assert "$schema=../kpi.schema.json" in path.read_text().splitlines()[0]
    elif rel.name == "certification.yaml":
        assert load_certification(METRICS).criteria
    elif rel.name == "attestations.yaml":
        assert load_attestations(METRICS).attestations
    elif rel.name in SCHEMAS:
        assert json.loads(path.read_text()) == json.loads(render(rel.name))
    elif rel.name == "README.md":
        text = path.read_text()
        for name in ("kpis/", "certification.yaml", "attestations.yaml", "civicflow check"):
            assert name in text
    else:
        pytest.fail(f"unexpected file in metrics/: {rel}")


def test_published_schemas_are_in_sync() -> None:
    for name in SCHEMAS:
        assert (METRICS / name).read_text() == render(name), (
            f"run: civicflow scorecard schema --write ({name} is stale)"
        )


def test_every_field_of_every_metrics_model_has_a_description() -> None:
    for name in SCHEMAS:
        schema = json.loads(render(name))
        for def_name, definition in [("root", schema), *schema.get("$defs", {}).items()]:
            for prop, body in definition.get("properties", {}).items():
                assert body.get("description"), f"{name}: {def_name}.{prop} has no description"


def test_bundled_metrics_pass_check_and_load_together() -> None:
    assert check_files(Settings(project_dir=PROJECT, var_dir=PROJECT / "var")) == []
    config = load_metrics(METRICS)
    assert len(config.kpis) >= 5
    # at least five KPIs broken down by council district, as the scorecard promises
    assert (
        sum(
            1
            for k in config.kpis.values()
            if any(d.column == "cd" and d.equity for d in k.dimensions)
        )
        >= 5
    )


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of the project's specs and metrics (data linked), to break one thing at a time."""
    for name in ("datasets", "expectations", "metrics"):
        shutil.copytree(PROJECT / name, tmp_path / name)
    (tmp_path / "data").symlink_to(PROJECT / "data")
    (tmp_path / "pyproject.toml").write_text("")
    return tmp_path


def _edit(path: Path, old: str, new: str) -> int:
    """Replace the first ``old`` with ``new``; return its 1-based line."""
    text = path.read_text()
    assert old in text, old
    line = text[: text.index(old)].count("\n") + 1
    path.write_text(text.replace(old, new, 1))
    return line


def _problems(project: Path) -> list[str]:
    return [str(p) for p in check_files(Settings(project_dir=project, var_dir=project / "var"))]


def test_typo_in_a_dimension_column_names_file_line_and_key(project: Path) -> None:
    path = project / "metrics" / "kpis" / "graffiti_removed_within_two_days.yaml"
    line = _edit(
        path, "{column: cd, title: By council district", "{column: cdd, title: By council district"
    )
    assert _problems(project) == [
        f"{path}:{line}: dimensions.0.column: dataset la311_service_requests has no field 'cdd' (did you mean 'cd'?)"
    ]


def test_typo_in_still_open_names_file_line_and_key(project: Path) -> None:
    path = project / "metrics" / "kpis" / "illegal_dumping_median_days.yaml"
    line = _edit(
        path,
        "where: [{column: closed_date, op: is_null}]",
        "where: [{column: close_date, op: is_null}]",
    )
    assert _problems(project) == [
        f"{path}:{line}: still_open.where.0.column: dataset la311_service_requests has no field 'close_date' (did you mean 'closed_date'?)"
    ]


def test_typo_in_a_filter_and_the_period_column(project: Path) -> None:
    path = project / "metrics" / "kpis" / "illegal_dumping_median_days.yaml"
    f_line = _edit(
        path, "{column: status, op: eq, value: Closed}", "{column: staus, op: eq, value: Closed}"
    )
    p_line = _edit(path, "period: {column: created_date", "period: {column: created_dat")
    problems = _problems(project)
    assert any(
        p.startswith(f"{path}:{f_line}: filters.1.column: ") and "'staus'" in p for p in problems
    ), problems
    assert any(
        p.startswith(f"{path}:{p_line}: period.column: ") and "'created_dat'" in p for p in problems
    ), problems


def test_typo_inside_an_expression_is_caught_by_duckdb_before_any_data(project: Path) -> None:
    path = project / "metrics" / "kpis" / "illegal_dumping_median_days.yaml"
    line = _edit(path, "closed_date) / 86400.0", "closed_dte) / 86400.0")
    problems = _problems(project)
    assert len(problems) == 1
    assert problems[0].startswith(
        f"{path}:{line}: measure.expression: DuckDB cannot use this expression"
    )
    assert "closed_dte" in problems[0]


def test_wrong_lookup_field_and_non_numeric_measure(project: Path) -> None:
    kpi = project / "metrics" / "kpis" / "la311_median_days_to_close.yaml"
    line = _edit(kpi, "key: nc_id", "key: nc_code")
    lax = project / "metrics" / "kpis" / "lax_passengers_per_month.yaml"
    lax_line = _edit(lax, "column: passenger_count}", "column: terminal}")
    problems = _problems(project)
    assert (
        f"{kpi}:{line}: dimensions.2.lookup.key: dataset neighborhood_councils has no field 'nc_code' (did you mean 'nc_id'?)"
        in problems
    )
    assert (
        f"{lax}:{lax_line}: measure.column: measure sum needs a number field; 'terminal' is string"
        in problems
    )


def test_unknown_key_and_bad_value_are_parse_errors_with_lines(project: Path) -> None:
    path = project / "metrics" / "kpis" / "la311_requests_by_channel.yaml"
    line = _edit(path, "unit: requests", "units: requests")
    problems = _problems(project)
    assert (
        f"{path}:{line}: units: unknown key (check the spelling; see datasets/spec.schema.json)"
        in problems
    )
    assert any(p.startswith(f"{path}:") and ": unit: Field required" in p for p in problems)


def test_raw_sql_kpi_is_checked_for_its_columns(project: Path) -> None:
    path = project / "metrics" / "kpis" / "raw_total.yaml"
    path.write_text(
        "id: raw_total\ntitle: Raw total\ndescription: Total requests per day, written as raw SQL.\n"
        "department: ITA\nowner: {name: a, email: a@lacity.example}\ndataset: la311_service_requests\n"
        "period: {column: created_date, grain: day}\nunit: requests\n"
        "sql: |\n  SELECT CAST(created_date AS DATE) AS period, count(*) AS value\n  FROM la311_service_requests GROUP BY 1\n"
    )
    problems = _problems(project)
    assert len(problems) == 1
    assert problems[0].startswith(f"{path}:9: sql: DuckDB cannot run the compiled query")


def test_check_runs_kpi_sql_without_file_access(project: Path) -> None:
    # the raw copy of a run: check must not read it while trying the KPI's SQL
    raw = project / "var" / "raw" / "la311_service_requests" / "run-1.csv"
    raw.parent.mkdir(parents=True)
    raw.write_text("created_date,name\n2024-01-01,Maria Lopez\n")
    path = project / "metrics" / "kpis" / "reads_raw.yaml"
    path.write_text(
        "id: reads_raw\ntitle: Reads raw\ndescription: A KPI that tries to read a raw copy.\n"
        "department: ITA\nowner: {name: a, email: a@lacity.example}\ndataset: la311_service_requests\n"
        "period: {column: created_date, grain: day}\nunit: requests\n"
        "sql: |\n  SELECT CAST(created_date AS DATE) AS period, NULL AS dimension, NULL AS group_key,\n"
        f"    NULL AS group_label, count(*) AS value, count(*) AS n FROM read_csv('{raw}') GROUP BY 1\n"
    )
    problems = _problems(project)
    assert len(problems) == 1
    assert problems[0].startswith(f"{path}:9: sql: DuckDB cannot run the compiled query")
    assert "file system operations are disabled" in problems[0] and "Maria" not in problems[0]


def test_attestation_for_an_unknown_criterion_and_unknown_file(project: Path) -> None:
    att = project / "metrics" / "attestations.yaml"
    line = _edit(att, "criterion: open_data_policy", "criterion: open_data_polcy")
    stray = project / "metrics" / "notes.yaml"
    stray.write_text("a: 1\n")
    problems = _problems(project)
    assert any(
        p.startswith(
            f"{att}:{line}: attestations.0.criterion: no attested criterion 'open_data_polcy'"
        )
        for p in problems
    ), problems
    assert any(p.startswith(f"{stray}: (file): not a metrics file") for p in problems)


def test_certification_levels_must_increase(project: Path) -> None:
    path = project / "metrics" / "certification.yaml"
    _edit(path, "{name: Gold, min_percent: 67}", "{name: Gold, min_percent: 45}")
    problems = _problems(project)
    assert any(
        p.startswith(f"{path}:") and "lowest first with increasing min_percent" in p
        for p in problems
    ), problems


def test_civicflow_check_fails_on_a_typoed_kpi_column(project: Path, monkeypatch) -> None:
    from civicflow.cli import app

    path = project / "metrics" / "kpis" / "bulky_items_closed_within_target.yaml"
    line = _edit(path, "{column: request_type, op: eq", "{column: request_typ, op: eq")
    monkeypatch.setenv("CIVICFLOW_PROJECT_DIR", str(project))
    monkeypatch.setenv("CIVICFLOW_VAR_DIR", str(project / "var"))
    result = CliRunner().invoke(app, ["check"])
    assert result.exit_code == 2, result.output
    assert (
        f"{path}:{line}: filters.0.column: dataset la311_service_requests has no field 'request_typ'"
        in result.output
    )


def test_models_refuse_inconsistent_definitions() -> None:
    base = {
        "id": "k",
        "title": "KPI",
        "description": "A description long enough.",
        "department": "D",
        "owner": {"name": "n", "email": "n@x.example"},
        "dataset": "d",
        "period": {"column": "c", "grain": "day"},
        "unit": "u",
    }
    with pytest.raises(ValueError, match="exactly one of measure"):
        Kpi.model_validate(base)
    with pytest.raises(ValueError, match="threshold is required"):
        Kpi.model_validate(base | {"measure": {"kind": "share_within", "column": "x"}})
    with pytest.raises(ValueError, match="takes values"):
        Kpi.model_validate(
            base
            | {"measure": {"kind": "count"}, "filters": [{"column": "x", "op": "in", "value": 1}]}
        )
    with pytest.raises(ValueError, match="snake_case"):
        Kpi.model_validate(
            base
            | {"measure": {"kind": "count"}, "dimensions": [{"column": "Bad Col", "title": "x"}]}
        )


def test_load_metrics_collects_problems_from_every_file(project: Path) -> None:
    (project / "metrics" / "kpis" / "lax_passengers_per_month.yaml").write_text("id: [unclosed\n")
    _edit(project / "metrics" / "certification.yaml", "scoring: counted", "scoring: countd")
    with pytest.raises(SpecError) as info:
        load_metrics(project / "metrics")
    text = str(info.value)
    assert "lax_passengers_per_month.yaml:" in text and "YAML does not parse" in text
    assert "certification.yaml:" in text and "scoring" in text


def test_civicflow_scorecard_refuses_a_bad_metrics_file_before_running(
    project: Path, monkeypatch
) -> None:
    from civicflow.cli import app

    path = project / "metrics" / "kpis" / "la311_requests_by_channel.yaml"
    line = _edit(path, "measure: {kind: count}", "measure: {kind: cout}")
    monkeypatch.setenv("CIVICFLOW_PROJECT_DIR", str(project))
    monkeypatch.setenv("CIVICFLOW_VAR_DIR", str(project / "var"))
    result = CliRunner().invoke(app, ["scorecard", "--no-publish"])
    assert result.exit_code == 2, result.output
    assert f"{path}:{line}: measure.kind:" in result.output
    assert not (project / "var" / "site").exists()
