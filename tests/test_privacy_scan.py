"""protect() over real bundled extracts: rules applied, scan findings, allowances, report."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from pydantic import ValidationError

from civicflow.privacy import PrivacyError, check_ready, protect, published_type
from civicflow.privacy.detectors import ADDRESS_IN_ADDRESS_COLUMN, DETECTORS, detector_names
from civicflow.privacy.keys import HashKey
from civicflow.settings import Settings
from civicflow.sources import extract
from civicflow.spec import find_dataset
from civicflow.spec.models import DatasetSpec, FieldSpec, PrivacyRule
from civicflow.spec.schema import json_schema

PROJECT = Path(__file__).resolve().parents[1]
KEY = HashKey("scan-test-key-0123456789", "test")


def settings_for(tmp_path: Path, env: dict[str, str] | None = None) -> Settings:
    return Settings(project_dir=PROJECT, var_dir=tmp_path / "var", env=env or {})


@pytest.fixture(scope="module")
def extracts(
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, tuple[DatasetSpec, pd.DataFrame]]:
    settings = settings_for(tmp_path_factory.mktemp("privacy"))
    out = {}
    for dataset in (
        "parking_citations",
        "code_enforcement_cases",
        "la311_service_requests",
        "neighborhood_councils",
    ):
        spec = find_dataset(settings.datasets_dir, dataset)
        out[dataset] = (spec, extract(spec, settings, "test-run").frame)
    return out


def without_rule(spec: DatasetSpec, field: str) -> DatasetSpec:
    fields = [f.model_copy(update={"privacy": None}) if f.name == field else f for f in spec.fields]
    return spec.model_copy(update={"fields": fields})


def with_field(spec: DatasetSpec, name: str, **update: object) -> DatasetSpec:
    fields = [
        FieldSpec.model_validate({**f.model_dump(), **update}) if f.name == name else f
        for f in spec.fields
    ]
    return spec.model_copy(update={"fields": fields})


@pytest.mark.parametrize(
    "dataset",
    [
        "parking_citations",
        "code_enforcement_cases",
        "la311_service_requests",
        "neighborhood_councils",
    ],
)
def test_bundled_specs_pass_the_scan(extracts: dict, tmp_path: Path, dataset: str) -> None:
    spec, frame = extracts[dataset]
    result = protect(spec, frame, settings_for(tmp_path), hash_key=KEY)
    assert not result.report.blocked, result.report.summary()
    assert list(result.frame.columns) == [f.name for f in spec.published_fields()]
    assert result.frame.index.equals(frame.index)
    assert result.report.summary().startswith("passed:")


def test_parking_publishes_no_vehicle_identifier_in_clear(extracts: dict, tmp_path: Path) -> None:
    spec, frame = extracts["parking_citations"]
    out = protect(spec, frame, settings_for(tmp_path), hash_key=KEY).frame
    assert "plate_expiry_date" not in out.columns
    assert out["vin"].dropna().str.fullmatch(r"[0-9a-f]{64}").all()
    # Locations: the hundred block of the source's house number, row by row, including
    # numbers glued to a direction ("2209E MICHIGAN AVE") or to "AF" and fractions.
    house = r"^(?:AF)?(\d+)(?:[NSEW]|-\d/\d)?\s"
    numbers = frame["location"].str.extract(house)[0].dropna().astype(int)
    published = out.loc[numbers.index, "location"].str.extract(house)[0].astype(int)
    assert len(numbers) > 9000 and (published == numbers // 100 * 100).all()
    # Coordinates: degrees inside Los Angeles, at most 3 decimals.
    lat, lon = out["latitude"].dropna(), out["longitude"].dropna()
    assert lat.between(33.70, 34.34).all() and lon.between(-118.67, -118.15).all()
    assert np.allclose(lat, lat.round(3)) and np.allclose(lon, lon.round(3))


@pytest.mark.parametrize(
    ("dataset", "field", "detector"),
    [
        ("parking_citations", "location", "street_address"),
        ("parking_citations", "latitude", "coordinate"),
        ("code_enforcement_cases", "inspector_notes", "phone"),
        ("code_enforcement_cases", "property_address", "street_address"),
    ],
)
def test_removing_one_rule_blocks_with_the_column_named(
    extracts: dict, tmp_path: Path, dataset: str, field: str, detector: str
) -> None:
    spec, frame = extracts[dataset]
    report = protect(without_rule(spec, field), frame, settings_for(tmp_path), hash_key=KEY).report
    assert report.blocked
    blocking = {(f.column, f.detector) for f in report.blocking}
    assert (field, detector) in blocking
    assert {c for c, _ in blocking} == {field}
    assert f"BLOCKED: {field}: " in report.summary() or f"; {field}: " in report.summary()


def test_blocked_report_masks_values_and_names_rows(extracts: dict, tmp_path: Path) -> None:
    spec, frame = extracts["code_enforcement_cases"]
    report = protect(
        without_rule(spec, "inspector_notes"), frame, settings_for(tmp_path), hash_key=KEY
    ).report
    path = report.write(tmp_path / "privacy.json")
    text = path.read_text()
    data = json.loads(text)
    assert data["blocked"] is True and data["dataset_id"] == "code_enforcement_cases"
    phone = next(f for f in data["findings"] if f["detector"] == "phone")
    assert phone["column"] == "inspector_notes" and phone["count"] > 0
    for row, example in zip(phone["example_rows"], phone["examples"], strict=True):
        assert row in frame.index and sum(c.isdigit() for c in example) <= 2
    # No complainant value and no clear phone number anywhere in the report.
    for col in ("complainant_name", "complainant_phone", "complainant_email"):
        for value in frame[col].dropna().unique():
            assert value not in text
    assert not re.search(r"\d{3}[-. ]\d{3}[-. ]\d{4}", text)


def test_allowances_carry_their_reason_to_report_and_metadata(
    extracts: dict, tmp_path: Path
) -> None:
    spec, frame = extracts["neighborhood_councils"]
    report = protect(spec, frame, settings_for(tmp_path), hash_key=KEY).report
    allowance = next(a for a in report.allowances if a.column == "email")
    reason = spec.field("email").pii_allow[0].reason
    assert allowance.detector == "email" and allowance.reason == reason and allowance.findings > 0
    assert all(f.allowed and f.reason == reason for f in report.findings if f.column == "email")
    assert reason in report.metadata_notes()["email"]
    assert "allowed by the spec: email: email x97" in report.summary()


def test_undeclared_coordinates_and_text_pairs_are_found(tmp_path: Path, extracts: dict) -> None:
    spec, _ = extracts["parking_citations"]
    frame = pd.DataFrame(
        {
            "route": ["(34.073216, -118.266861)", "1521", None],
            "fine_amount": pd.array([50, 63, None], dtype="Int64"),
        },
        index=pd.RangeIndex(1, 4, name="row"),
    )
    mini = spec.model_copy(
        update={
            "fields": [spec.field("route"), spec.field("fine_amount")],
            "transforms": [],
            "primary_key": [],
        }
    )
    report = protect(mini, frame, settings_for(tmp_path)).report
    assert [(f.column, f.detector, f.example_rows) for f in report.blocking] == [
        ("route", "coordinate", [1])
    ]
    # A float column full of fine decimals inside +-180 reads as coordinates when undeclared.
    floats = pd.DataFrame(
        {"fine_amount": [34.0732166, 34.0611111, np.nan]}, index=pd.RangeIndex(1, 4, name="row")
    )
    float_spec = mini.model_copy(
        update={"fields": [FieldSpec(name="fine_amount", type="number", description="test column")]}
    )
    report = protect(float_spec, floats, settings_for(tmp_path)).report
    assert [(f.column, f.detector, f.count) for f in report.blocking] == [
        ("fine_amount", "coordinate", 2)
    ]


def test_small_counts_are_suppressed_and_noted(tmp_path: Path, extracts: dict) -> None:
    spec, _ = extracts["parking_citations"]
    fields = [
        FieldSpec(name="agency", type="string", description="group"),
        FieldSpec(name="fine_amount", type="integer", description="count of citations"),
    ]
    agg = spec.model_copy(
        update={
            "fields": fields,
            "transforms": [],
            "primary_key": [],
            "privacy": spec.privacy.model_copy(update={"small_count_columns": ["fine_amount"]}),
        }
    )
    frame = pd.DataFrame(
        {"agency": ["a", "b", "c", "d"], "fine_amount": pd.array([0, 3, 10, 11], dtype="Int64")},
        index=pd.RangeIndex(1, 5, name="row"),
    )
    result = protect(agg, frame, settings_for(tmp_path))
    assert (
        result.frame["fine_amount"].tolist()[0] == 0
        and pd.isna(result.frame["fine_amount"].iloc[1])
        and pd.isna(result.frame["fine_amount"].iloc[2])
    )
    assert result.frame["fine_amount"].iloc[3] == 11
    rule = next(r for r in result.report.rules if r.rule == "suppress_small_counts")
    assert rule.values_changed == 2
    assert "suppressed" in result.report.metadata_notes()["fine_amount"]


def test_spec_problems_are_refused_before_any_work(tmp_path: Path, extracts: dict) -> None:
    spec, _ = extracts["parking_citations"]
    bad = with_field(spec, "fine_amount", privacy={"rule": "redact", "reason": "wrong type"})
    with pytest.raises(PrivacyError) as err:
        check_ready(bad, settings_for(tmp_path, {"CIVICFLOW_HASH_KEY": "k" * 32}))
    assert "fine_amount: redact works on string fields" in str(err.value)


def test_detector_typos_fail_the_spec_and_the_schema_lists_every_name() -> None:
    """A misspelt detector in pii_allow or redact.detectors fails ``check``, not the run."""
    with pytest.raises(ValidationError, match="telepathy"):
        FieldSpec.model_validate(
            {
                "name": "route",
                "type": "string",
                "description": "beat",
                "pii_allow": [{"detector": "telepathy", "reason": "no such detector exists"}],
            }
        )
    with pytest.raises(ValidationError, match="phones"):
        PrivacyRule(rule="redact", reason="notes", detectors=["phones"])
    defs = json_schema()["$defs"]
    assert defs["PiiAllowance"]["properties"]["detector"]["enum"] == detector_names()
    redact = defs["PrivacyRule"]["properties"]["detectors"]["anyOf"][0]["items"]["enum"]
    assert redact == sorted(DETECTORS)


def test_published_types_follow_the_rules(extracts: dict) -> None:
    spec, _ = extracts["parking_citations"]
    assert published_type(spec.field("vin")) == "string"
    assert published_type(spec.field("latitude")) == "number"
    assert (
        published_type(
            FieldSpec(
                name="age",
                type="integer",
                description="age",
                privacy={
                    "rule": "generalise",
                    "method": "age_band",
                    "band_width": 10,
                    "reason": "bands",
                },
            )
        )
        == "string"
    )


def mini_spec(spec: DatasetSpec, *fields: FieldSpec) -> DatasetSpec:
    return spec.model_copy(update={"fields": list(fields), "transforms": [], "primary_key": []})


def rows(n: int) -> pd.RangeIndex:
    return pd.RangeIndex(1, n + 1, name="row")


def blocking(report: object) -> list[tuple[str, str, list[int]]]:
    return [(f.column, f.detector, f.example_rows) for f in report.blocking]  # type: ignore[attr-defined]


def test_coordinates_need_a_precision_and_are_never_waved_through(
    extracts: dict, tmp_path: Path
) -> None:
    with pytest.raises(ValidationError, match="lat: semantic latitude needs a precision"):
        FieldSpec(name="lat", type="number", description="latitude", semantic="latitude")
    # A field built around validation (as code can) is held to the default, 3 decimals.
    lat = FieldSpec.model_construct(
        name="lat", type="number", description="latitude", semantic="latitude", precision=None
    )
    frame = pd.DataFrame({"lat": [34.0732166, 34.073, np.nan]}, index=rows(3))
    spec, _ = extracts["parking_citations"]
    report = protect(mini_spec(spec, lat), frame, settings_for(tmp_path)).report
    assert blocking(report) == [("lat", "coordinate", [1])]


def test_wkt_geometries_in_text_are_held_to_the_precision(extracts: dict, tmp_path: Path) -> None:
    spec, _ = extracts["parking_citations"]
    frame = pd.DataFrame(
        {
            "geometry": [
                "POINT (-118.2668619 34.0732166)",
                "POINT (-118.267 34.073)",
                "POLYGON ((-118.26 34.07, -118.2668619 34.0732166, -118.26 34.07))",
                None,
            ]
        },
        index=rows(4),
    )
    text = FieldSpec(name="geometry", type="string", description="shape as WKT")
    report = protect(mini_spec(spec, text), frame, settings_for(tmp_path)).report
    assert blocking(report) == [("geometry", "coordinate", [1, 3])]
    # A boundary layer declared at 7 decimals publishes its WKT as declared.
    precise = text.model_copy(update={"precision": 7})
    assert not protect(mini_spec(spec, precise), frame, settings_for(tmp_path)).report.blocked


def test_phone_and_ssn_shaped_integers_are_found(extracts: dict, tmp_path: Path) -> None:
    spec, _ = extracts["parking_citations"]
    values = [2135550134, 12135550134, 219099999, 1103341116, 1234567, 2135550134 // 10, None]
    frame = pd.DataFrame({"contact": pd.array(values, dtype="Int64")}, index=rows(len(values)))
    number = FieldSpec(name="contact", type="integer", description="a number column")
    report = protect(mini_spec(spec, number), frame, settings_for(tmp_path)).report
    # Ticket numbers (area code 110), counts and 9-digit non-SSNs (area 213... is valid: row 6
    # is 213555013, an SSN shape) are told apart only by their digits.
    assert blocking(report) == [("contact", "phone", [1, 2]), ("contact", "ssn", [3, 6])]
    text = json.dumps(report.to_dict())
    assert "2135550134" not in text and "219099999" not in text


def test_birth_dates_publish_the_year_only(extracts: dict, tmp_path: Path) -> None:
    spec, _ = extracts["parking_citations"]
    born = pd.to_datetime(pd.Series(["1985-05-17", "1990-01-01", None]))
    frame = pd.DataFrame({"born": born.to_numpy()}, index=rows(3))
    field = FieldSpec(name="born", type="date", description="birth date", semantic="birth_date")
    report = protect(mini_spec(spec, field), frame, settings_for(tmp_path)).report
    assert blocking(report) == [("born", "birth_date", [1])]
    month = field.model_copy(
        update={
            "privacy": PrivacyRule(
                rule="generalise", method="truncate", truncate_to="month", reason="coarser"
            )
        }
    )
    assert protect(mini_spec(spec, month), frame, settings_for(tmp_path)).report.blocked
    year = field.model_copy(
        update={
            "privacy": PrivacyRule(
                rule="generalise", method="truncate", truncate_to="year", reason="year only"
            )
        }
    )
    result = protect(mini_spec(spec, year), frame, settings_for(tmp_path))
    assert not result.report.blocked
    assert [str(v)[:10] for v in result.frame["born"].dropna()] == ["1985-01-01", "1990-01-01"]
    as_text = field.model_copy(update={"type": "string"})
    # Birth dates typed as text are read as dates; one that cannot be read still counts.
    text_frame = pd.DataFrame(
        {"born": ["05/17/1985", "1990-01-01", None, "17 de mayo de 1985"]}, index=rows(4)
    )
    report = protect(mini_spec(spec, as_text), text_frame, settings_for(tmp_path)).report
    assert blocking(report) == [("born", "birth_date", [1, 4])]


def test_negative_ages_are_invalid_not_a_band(extracts: dict, tmp_path: Path) -> None:
    spec, _ = extracts["parking_citations"]
    field = FieldSpec(
        name="age",
        type="integer",
        description="age of the person",
        privacy={"rule": "generalise", "method": "age_band", "band_width": 10, "reason": "bands"},
    )
    frame = pd.DataFrame({"age": pd.array([37, -7, None, 0], dtype="Int64")}, index=rows(4))
    result = protect(mini_spec(spec, field), frame, settings_for(tmp_path))
    assert blocking(result.report) == [("age", "invalid_value", [2])]
    assert result.frame["age"].iloc[0] == "30-39" and pd.isna(result.frame["age"].iloc[1])
    assert "-10--1" not in result.frame["age"].astype(str).tolist()
    assert "age: invalid_value x1 (rows 2)" in result.report.summary()


def test_blocked_summary_names_checks_columns_counts_and_rows_only(
    extracts: dict, tmp_path: Path
) -> None:
    """The summary becomes a ledger reason the public scorecard shows: no value, not
    even a masked one (the private report keeps the masked examples)."""
    spec, frame = extracts["code_enforcement_cases"]
    report = protect(
        without_rule(spec, "inspector_notes"), frame, settings_for(tmp_path), hash_key=KEY
    ).report
    summary = report.summary()
    finding = r"inspector_notes: [a-z_]+ x[\d,]+ \(rows [\d, …]+\)"
    tail = (
        "Fix the spec (a rule for the column, or a pii_allow with a reason) and run again;"
        " examples are in the privacy report."
    )
    assert re.fullmatch(rf"BLOCKED: {finding}(?:; {finding})*\. " + re.escape(tail), summary)
    assert report.blocking[0].examples  # the private report keeps masked examples


def test_block_address_beside_a_house_number_or_fine_coordinates_is_blocked(
    extracts: dict, tmp_path: Path
) -> None:
    """311 as first reviewed, with its address generalised: the house number and the
    10-decimal coordinates beside it would undo the block."""
    spec, frame = extracts["la311_service_requests"]
    coarse = {"rule": "generalise", "method": "round", "decimals": 10, "reason": "as the city"}
    old = without_rule(spec, "house_number")
    for name in ("latitude", "longitude", "location"):
        old = with_field(old, name, precision=10, privacy=coarse)
    report = protect(old, frame, settings_for(tmp_path)).report
    finer = {f.column: f for f in report.blocking if f.detector == "finer_location"}
    assert set(finer) == {"house_number", "latitude", "longitude", "location"}
    assert {f.detector for f in report.blocking} == {"finer_location"}
    exact_numbers = frame["house_number"].dropna()
    assert finer["house_number"].count == int((exact_numbers % 100 != 0).sum())
    assert "house_number: exact house numbers" in report.finest_location
    assert report.finest_location[0] == "latitude: 10 decimals (about 1 m or less)"
    assert "house_number: finer_location x" in report.summary()
    # A house-number column is read as one by its name even without its semantic.
    unmarked = with_field(old, "house_number", semantic=None)
    report = protect(unmarked, frame, settings_for(tmp_path)).report
    assert "house_number" in {f.column for f in report.blocking}
    # The same columns are fine when nothing is generalised (no block to undo) ...
    raw = old
    for name in ("address", "latitude", "longitude", "location"):
        raw = without_rule(raw, name)
    raw = with_field(
        raw,
        "address",
        pii_allow=[{"detector": "street_address", "reason": "a test of the scan alone"}],
    )
    raw_report = protect(raw, frame, settings_for(tmp_path)).report
    assert not [f for f in raw_report.blocking if f.detector == "finer_location"]
    # ... and a pii_allow with a reason can let a finer column through.
    allowed = with_field(
        old,
        "house_number",
        pii_allow=[{"detector": "finer_location", "reason": "a test of the allowance"}],
    )
    columns = {f.column for f in protect(allowed, frame, settings_for(tmp_path)).report.blocking}
    assert "house_number" not in columns and "latitude" in columns


def test_311_publishes_the_block_and_nothing_finer(extracts: dict, tmp_path: Path) -> None:
    spec, frame = extracts["la311_service_requests"]
    result = protect(spec, frame, settings_for(tmp_path))
    assert not result.report.blocked, result.report.summary()
    out = result.frame
    assert "house_number" not in out.columns and not spec.field("address").pii_allow
    assert not ADDRESS_IN_ADDRESS_COLUMN.find(pa.array(out["address"].tolist())).any()
    for name in ("latitude", "longitude"):
        values = out[name].dropna()
        assert len(values) > 8000 and np.allclose(values, values.round(3))
    assert out["location"].dropna().str.fullmatch(r"\(-?\d+(\.\d{1,3})?, -?\d+(\.\d{1,3})?\)").all()
    assert result.report.finest_location == [
        "address: hundred blocks",
        "latitude: 3 decimals (about 111 m)",
        "longitude: 3 decimals (about 111 m)",
        "location: 3 decimals (about 111 m)",
    ]
