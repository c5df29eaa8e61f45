"""The reproject transform: State Plane feet to WGS84 degrees, sentinels to null."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from civicflow.settings import Settings
from civicflow.sources import extract
from civicflow.sources.transforms import TransformError, apply_transforms, reproject
from civicflow.spec import find_dataset
from civicflow.spec.models import ReprojectTransform

PROJECT = Path(__file__).resolve().parents[1]
ZONE_V = ReprojectTransform(
    kind="reproject", x_field="x", y_field="y", source_crs="EPSG:2229", missing_values=[99999]
)


def test_false_origin_of_zone_v_lands_on_its_definition() -> None:
    # EPSG:2229: origin 33°30'N 118°W at false easting 2,000,000 m / northing 500,000 m (in US survey feet).
    feet = 1200 / 3937
    frame = pd.DataFrame(
        {"x": [2_000_000 / feet, 99999.0, np.nan], "y": [500_000 / feet, 1_800_000.0, 1_800_000.0]}
    )
    out = reproject(ZONE_V, frame)
    assert out["x"].iloc[0] == pytest.approx(-118.0, abs=1e-7)
    assert out["y"].iloc[0] == pytest.approx(33.5, abs=1e-7)
    assert (
        out[["x", "y"]].iloc[1:].isna().all().all()
    )  # sentinel or missing on either axis: no point
    assert frame["x"].iloc[0] == pytest.approx(2_000_000 / feet)  # the input is not modified


def test_non_numeric_fields_are_refused() -> None:
    with pytest.raises(TransformError, match="field x must be a number field"):
        reproject(ZONE_V, pd.DataFrame({"x": ["a"], "y": [1.0]}))
    bad = ZONE_V.model_copy(update={"source_crs": "EPSG:999999"})
    with pytest.raises(TransformError, match="unknown source_crs"):
        reproject(bad, pd.DataFrame({"x": [1.0], "y": [1.0]}))


def test_parking_citations_land_in_los_angeles(tmp_path: Path) -> None:
    settings = Settings(project_dir=PROJECT, var_dir=tmp_path / "var")
    spec = find_dataset(settings.datasets_dir, "parking_citations")
    frame = extract(spec, settings, "reproject-test").frame
    raw = pd.read_csv(
        spec.source.path if Path(spec.source.path).is_absolute() else PROJECT / spec.source.path,
        dtype=str,
    )
    missing = raw["Latitude"].eq("99999").to_numpy()
    assert frame["latitude"].isna().to_numpy().tolist() == missing.tolist()
    assert frame["latitude"].dropna().between(33.70, 34.34).all()
    assert frame["longitude"].dropna().between(-118.67, -118.15).all()
    # Row 3 is "200 WORLD WAY", the LAX terminal loop (about 33.944 N, 118.402 W).
    assert raw.loc[2, "Location"] == "200 WORLD WAY"
    assert frame.loc[3, "latitude"] == pytest.approx(33.944, abs=0.005)
    assert frame.loc[3, "longitude"] == pytest.approx(-118.402, abs=0.005)
    # apply_transforms is what extract ran: re-applying to the raw numbers gives the same.
    again = apply_transforms(
        spec,
        frame.assign(
            longitude=raw["Latitude"].astype(float).to_numpy(),
            latitude=raw["Longitude"].astype(float).to_numpy(),
        ),
    )
    assert np.allclose(again["latitude"], frame["latitude"], equal_nan=True)
