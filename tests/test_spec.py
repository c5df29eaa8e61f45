"""Dataset specs: every file in datasets/ loads; errors name file, line and key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from civicflow.spec import DatasetSpec, SpecError, load_dataset
from civicflow.spec.loader import dataset_paths
from civicflow.spec.schema import render

PROJECT = Path(__file__).resolve().parents[1]
DATASET_FILES = dataset_paths(PROJECT / "datasets")


@pytest.mark.parametrize("path", DATASET_FILES, ids=[p.stem for p in DATASET_FILES])
def test_every_dataset_spec_loads_and_is_complete(path: Path) -> None:
    spec = load_dataset(path)
    assert spec.id == path.stem
    assert all(f.description.strip() for f in spec.fields)
    assert set(spec.primary_key) <= {f.name for f in spec.fields}
    suite = PROJECT / "expectations" / f"{spec.suite_name}.json"
    assert suite.is_file(), f"{path.name}: no suite {suite.name}"
    declared = getattr(spec.source, "path", None)  # remote kinds (postgres, http) have none
    if declared is not None and "{var}" not in declared:
        assert (PROJECT / declared).is_file(), f"{path.name}: source file missing"
        source_md = (PROJECT / declared).parent / "SOURCE.md"
        assert source_md.is_file(), f"{path.name}: bundled data has no SOURCE.md beside it"


def test_published_json_schema_is_in_sync() -> None:
    on_disk = (PROJECT / "datasets" / "spec.schema.json").read_text()
    assert on_disk == render(title="civicflow dataset spec"), "run `civicflow spec schema --write`"


def test_every_model_field_has_a_description() -> None:
    def walk(schema: dict, where: str) -> list[str]:
        missing = []
        for name, prop in schema.get("properties", {}).items():
            if "description" not in prop:
                missing.append(f"{where}.{name}")
        return missing

    schema = json.loads(render())
    missing = walk(schema, "DatasetSpec")
    for name, sub in schema.get("$defs", {}).items():
        missing += walk(sub, name)
    assert missing == []


def _write(tmp_path: Path, text: str, name: str = "demo.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


BASE = (PROJECT / "datasets" / "la311_service_requests.yaml").read_text()


def _variant(tmp_path: Path, old: str, new: str) -> Path:
    assert old in BASE
    return _write(tmp_path, BASE.replace(old, new, 1), "la311_service_requests.yaml")


def test_unknown_key_is_named_with_file_and_line(tmp_path: Path) -> None:
    path = _variant(
        tmp_path, "update_frequency: daily", "update_frequency: daily\nrefresh_every: hour"
    )
    with pytest.raises(SpecError) as err:
        load_dataset(path)
    (problem,) = err.value.problems
    assert problem.key == "refresh_every"
    assert problem.line == BASE.splitlines().index("update_frequency: daily") + 2
    assert str(path) in str(err.value) and "unknown key" in str(err.value)


def test_typo_in_field_type_names_the_field(tmp_path: Path) -> None:
    path = _variant(
        tmp_path, "source: CreatedDate, type: datetime", "source: CreatedDate, type: datetme"
    )
    with pytest.raises(SpecError) as err:
        load_dataset(path)
    (problem,) = err.value.problems
    assert problem.key == "fields.1.type"
    assert "datetme" in problem.message
    assert problem.line == next(
        i for i, line in enumerate(BASE.splitlines(), 1) if "CreatedDate" in line
    )


def test_yaml_syntax_error_has_a_line(tmp_path: Path) -> None:
    path = _variant(tmp_path, "category: Service Requests", "category: [Service Requests")
    with pytest.raises(SpecError) as err:
        load_dataset(path)
    assert err.value.problems[0].line is not None
    assert "YAML does not parse" in str(err.value)


def test_primary_key_must_name_a_field(tmp_path: Path) -> None:
    path = _variant(tmp_path, "primary_key: [sr_number]", "primary_key: [sr_numbr]")
    with pytest.raises(SpecError, match="sr_numbr"):
        load_dataset(path)


def test_id_must_match_file_name(tmp_path: Path) -> None:
    path = _write(tmp_path, BASE, "other_name.yaml")
    with pytest.raises(SpecError, match="must match the file name"):
        load_dataset(path)


def test_published_fields_exclude_dropped_columns() -> None:
    spec = load_dataset(PROJECT / "datasets" / "la311_service_requests.yaml")
    data = spec.model_dump()
    data["fields"][8]["privacy"] = {"rule": "drop", "reason": "not needed by residents"}
    dropped = DatasetSpec.model_validate(data)
    assert "mobile_os" not in [f.name for f in dropped.published_fields()]
    assert len(dropped.published_fields()) == len(spec.published_fields()) - 1
