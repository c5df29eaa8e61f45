"""Each privacy rule as a plain function: examples from the issue, then properties."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from civicflow.privacy.detectors import ADDRESS_IN_ADDRESS_COLUMN, DETECTORS, PHONE
from civicflow.privacy.generalise import GENERALISERS, hundred_block_text
from civicflow.privacy.keys import HashKey
from civicflow.privacy.rules import (
    hash_values,
    redact_known_values,
    redact_text,
    suppress_small_counts,
)
from civicflow.spec.models import PrivacyRule

# Speed targets live in benchmarks/, not in tests: no per-example deadline (a busy
# 2-core machine would fail them), and no too-slow health check.
NO_DEADLINE = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])

PARKING_CSV = (
    Path(__file__).resolve().parents[1] / "data/parking_citations/la_parking_citations_subset.csv"
)
KEY_A = HashKey("a" * 32, "test")
KEY_B = HashKey("b" * 32, "test")
ALL_TEXT_DETECTORS = [d for d in DETECTORS.values() if d.redacts]


def rule(**kw: object) -> PrivacyRule:
    return PrivacyRule(rule="generalise", reason="test rule", **kw)


def series(values: list, dtype: str | None = None, start: int = 1) -> pd.Series:
    return pd.Series(
        values, index=pd.RangeIndex(start, start + len(values), name="row"), dtype=dtype
    )


# -- hundred block -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2111 W BELLEVUE AVE", "2100 W BELLEVUE AVE"),
        ("2111 W BELLEVUE AVE, 90026", "2100 W BELLEVUE AVE, 90026"),
        ("13147 WELBY WAY", "13100 WELBY WAY"),
        ("8330 3RD ST W", "8300 3RD ST W"),
        ("153 7/8 SOUTH BERENDO STREET", "100 7/8 SOUTH BERENDO STREET"),
        ("1234 1/2 MAIN ST", "1200 1/2 MAIN ST"),
        ("1234-1236 MAIN ST", "1200-1200 MAIN ST"),
        ("75 2ND ST E", "0 2ND ST E"),
        ("A/F 4454 W AVOCADO", "A/F 4400 W AVOCADO"),
        ("6221 W 96TH ST/18A", "6200 W 96TH ST/18A"),
        ("GEORGIA ST/OLYMPIC", "GEORGIA ST/OLYMPIC"),
        ("200 WORLD WAY", "200 WORLD WAY"),
        # house numbers glued to a direction letter, as LADOT writes some locations
        ("2209E MICHIGAN AVE", "2200E MICHIGAN AVE"),
        ("520N VAN NESS AVE", "500N VAN NESS AVE"),
        ("133S SOUTH LUCERNE BOULEVARD", "100S SOUTH LUCERNE BOULEVARD"),
        ("75E 2ND ST", "0E 2ND ST"),
        ("AF4421 ORCHARD AVE", "AF4400 ORCHARD AVE"),
        # fractions and ranges
        ("1808-1/2 W 25TH ST", "1800-1/2 W 25TH ST"),
        ("100-110 N MAIN ST", "100-100 N MAIN ST"),
        ("12-14 MAIN ST", "0 MAIN ST"),
        # prefix-type street names
        ("13415 VIA MARINA", "13400 VIA MARINA"),
        ("1901 AVENUE OF THE STARS", "1900 AVENUE OF THE STARS"),
        ("205 AVENUE 50 N", "200 AVENUE 50 N"),
    ],
)
def test_hundred_block_examples(raw: str, expected: str) -> None:
    assert hundred_block_text(pa.array([raw])).to_pylist() == [expected]


STREET = st.sampled_from(
    [
        "BELLEVUE",
        "3RD",
        "96TH",
        "SANTA MONICA",
        "LA BREA",
        "MAIN",
        "O'FARRELL",
        "VAN NUYS",
        "VIA MARINA",
        "AVENUE OF THE STARS",
        "AVENUE 50",
    ]
)
SUFFIX = st.sampled_from(["AVE", "ST", "BLVD", "WAY", "PL", "DR", ""])
#: how the house number is written: solid, glued to a direction, with a fraction, a range
HOUSE_FORMS = st.sampled_from(["{n} ", "{n}E ", "{n}N ", "{n} 1/2 ", "{n}-1/2 ", "{n}-{m} "])


def house_numbers(text: str) -> list[int]:
    """Every number written as a house number (not fractions, ZIPs or AVENUE 50)."""
    head = text.rsplit(",", 1)[0]
    pattern = r"(?<![\d/])(?<!AVENUE )(\d+)(?=[NSEW]?[ -]|-\d/)"
    return [int(n) for n in re.findall(pattern, head)]


@NO_DEADLINE
@given(
    number=st.integers(min_value=1, max_value=99999).filter(lambda n: n % 100 != 0),
    span=st.integers(1, 30),
    form=HOUSE_FORMS,
    direction=st.sampled_from(["", "N ", "S ", "E ", "W "]),
    street=STREET,
    suffix=SUFFIX,
    zip_code=st.one_of(st.just(""), st.from_regex(r"9[01]\d{3}", fullmatch=True)),
)
def test_hundred_block_never_keeps_the_house_number(
    number: int, span: int, form: str, direction: str, street: str, suffix: str, zip_code: str
) -> None:
    house = form.format(n=number, m=number + span)
    address = f"{house}{direction}{street} {suffix}".strip() + (f", {zip_code}" if zip_code else "")
    out = hundred_block_text(pa.array([address])).to_pylist()[0]
    kept = house_numbers(out)
    assert kept and all(n % 100 == 0 for n in kept), (address, out)
    assert kept[0] == (number // 100 * 100 if number >= 100 or "-{m}" not in form else 0)
    assert out.endswith(f", {zip_code}") or not zip_code  # the ZIP is not a house number
    assert street in out  # the street itself is kept


def test_real_parking_locations_lose_every_exact_house_number() -> None:
    """The bundled LADOT column, including the 17 numbers glued to a direction letter."""
    column = pd.read_csv(PARKING_CSV, usecols=["Location"], dtype=str)["Location"].dropna()
    glued = column[column.str.match(r"^\d+[NSEW] ")]
    assert (~glued.str.match(r"^\d*00[NSEW] ")).sum() == 17
    out = pd.Series(hundred_block_text(pa.array(column.tolist())).to_pylist())
    exact = out.str.extract(r"^(?:AF|A/F |AF |APRX |S/O )?(\d+)[NSEW]?[ -]")[0].dropna().astype(int)
    assert len(exact) > 9000 and (exact % 100 == 0).all()
    assert not ADDRESS_IN_ADDRESS_COLUMN.find(pa.array(out.tolist())).any()
    assert ADDRESS_IN_ADDRESS_COLUMN.find(pa.array(glued.tolist())).sum() == 17


def test_generalisers_keep_nulls_and_row_numbers() -> None:
    values = series(["2111 W BELLEVUE AVE", None, "13147 WELBY WAY"], "str", start=5)
    out = GENERALISERS["hundred_block"](values, rule(method="hundred_block"))
    assert out.index.tolist() == [5, 6, 7]
    assert (
        out.tolist()[0] == "2100 W BELLEVUE AVE"
        and pd.isna(out.tolist()[1])
        and out.tolist()[2] == "13100 WELBY WAY"
    )


# -- coordinates, timestamps, ages, ZIPs -----------------------------------------------


@NO_DEADLINE
@given(
    st.lists(
        st.one_of(st.none(), st.floats(min_value=-180, max_value=180, allow_nan=False)),
        min_size=1,
        max_size=30,
    ),
    st.integers(0, 6),
)
def test_round_keeps_nulls_and_never_exceeds_decimals(values: list, decimals: int) -> None:
    s = series([np.nan if v is None else v for v in values], "float64")
    out = GENERALISERS["round"](s, rule(method="round", decimals=decimals))
    assert out.isna().tolist() == s.isna().tolist()
    for v in out.dropna():
        text = repr(float(v))
        assert "e" in text or len(text.split(".")[1].rstrip("0")) <= decimals
    assert (abs(out - s).dropna() <= 0.5 * 10**-decimals + 1e-9).all()


def test_round_geopoint_text() -> None:
    s = series(["(34.073216645, -118.266861909)", None, "(34.1, -118.2)"], "str")
    out = GENERALISERS["round"](s, rule(method="round", decimals=3))
    assert (
        out.iloc[0] == "(34.073, -118.267)"
        and pd.isna(out.iloc[1])
        and out.iloc[2] == "(34.1, -118.2)"
    )


@NO_DEADLINE
@given(
    st.lists(st.floats(min_value=-180, max_value=180, allow_nan=False), min_size=1, max_size=20),
    st.sampled_from([0.01, 0.005, 0.25]),
)
def test_grid_snaps_to_the_nearest_grid_point(values: list, size: float) -> None:
    out = GENERALISERS["grid"](series(values, "float64"), rule(method="grid", grid_size=size))
    steps = out / size
    assert np.allclose(steps, np.round(steps), atol=1e-6)
    assert (abs(out.to_numpy() - np.asarray(values)) <= size / 2 + 1e-9).all()


@pytest.mark.parametrize(
    ("unit", "expected"),
    [
        ("day", "2017-12-31 00:00:00"),
        ("hour", "2017-12-31 23:00:00"),
        ("month", "2017-12-01 00:00:00"),
    ],
)
def test_truncate_timestamps(unit: str, expected: str) -> None:
    s = series([pd.Timestamp("2017-12-31 23:59:58"), pd.NaT]).astype("datetime64[s]")
    out = GENERALISERS["truncate"](s, rule(method="truncate", truncate_to=unit))
    assert str(out.iloc[0]) == expected and pd.isna(out.iloc[1])


@NO_DEADLINE
@given(
    st.lists(st.one_of(st.none(), st.integers(0, 120)), min_size=1, max_size=30),
    st.sampled_from([5, 10]),
)
def test_age_bands_contain_the_age(ages: list, width: int) -> None:
    out = GENERALISERS["age_band"](series(ages, "Int64"), rule(method="age_band", band_width=width))
    for age, band in zip(ages, out.tolist(), strict=True):
        if age is None:
            assert pd.isna(band)
        else:
            low, high = (int(x) for x in band.split("-"))
            assert low <= age <= high and high - low == width - 1 and str(age) != band


def test_zip5() -> None:
    out = GENERALISERS["zip5"](
        series(["90026-1234", "900261234", "90026", None, "N/A"], "str"), rule(method="zip5")
    )
    assert out.tolist()[:3] == ["90026"] * 3 and pd.isna(out.iloc[3]) and out.iloc[4] == "N/A"


# -- hash ------------------------------------------------------------------------------


@NO_DEADLINE
@given(st.lists(st.one_of(st.none(), st.text(min_size=1, max_size=20)), min_size=1, max_size=30))
def test_hash_is_stable_keyed_and_keeps_nulls(values: list) -> None:
    s = series(values, "object")
    a1, a2, b = hash_values(s, KEY_A), hash_values(s.copy(), KEY_A), hash_values(s, KEY_B)
    assert a1.tolist() == a2.tolist()  # same key: same hashes (joins across runs work)
    for v, ha, hb in zip(values, a1.tolist(), b.tolist(), strict=True):
        if v is None:
            assert pd.isna(ha) and pd.isna(hb)
        else:
            assert re.fullmatch(r"[0-9a-f]{64}", ha) and ha != hb


@NO_DEADLINE
@given(st.from_regex(r"[A-HJ-NPR-Z0-9]{17}", fullmatch=True))
def test_hash_output_never_holds_the_input_digits(vin: str) -> None:
    out = hash_values(series([vin, vin], "str"), KEY_A)
    assert out.iloc[0] == out.iloc[1] and vin not in out.iloc[0]


def test_hash_of_integers_and_their_text_agree() -> None:
    # A ticket number typed as integer in one dataset and as text in another still joins.
    assert (
        hash_values(series([1103341116], "Int64"), KEY_A).iloc[0]
        == hash_values(series(["1103341116"], "str"), KEY_A).iloc[0]
    )


# -- redact ----------------------------------------------------------------------------


def test_redact_replaces_each_kind_with_its_placeholder_and_keeps_the_rest() -> None:
    notes = series(
        [
            "Call (213) 555-0134 or email maria.lopez@example.com; SSN 123-45-6789.",
            "Card 4111 1111 1111 1111, VIN 1M8GDM9AXKP042788, spoke with Maria Lopez.",
            "Related case CE-2024-001234, SR 1-870704831, ticket 4272345678 on 2024-03-15 in 90026.",
            None,
        ],
        "str",
    )
    out = redact_text(notes, ALL_TEXT_DETECTORS).tolist()
    assert out[0] == "Call [PHONE] or email [EMAIL]; SSN [SSN]."
    assert out[1] == "Card [CARD], VIN [VIN], spoke with [NAME]."
    assert out[2] == notes.iloc[2]  # lookalikes untouched
    assert pd.isna(out[3])


PHONE_FORMATS = st.sampled_from(
    [
        "({a}) {e}-{n}",
        "{a}-{e}-{n}",
        "{a}.{e}.{n}",
        "+1-{a}-{e}-{n}",
        "001-{a}-{e}-{n}x123",
        "1 {a} {e} {n}",
    ]
)


@NO_DEADLINE
@given(
    fmt=PHONE_FORMATS,
    area=st.integers(200, 999),
    exchange=st.integers(200, 999),
    number=st.integers(0, 9999),
    before=st.sampled_from(["Call ", "reached at ", "tel: ", "", "Neighbor says "]),
    after=st.sampled_from(["", " after 5 pm.", ", thanks", "."]),
)
def test_redacted_text_never_holds_the_phone_digits(
    fmt: str, area: int, exchange: int, number: int, before: str, after: str
) -> None:
    phone = fmt.format(a=area, e=exchange, n=f"{number:04d}")
    out = redact_text(series([before + phone + after], "str"), [PHONE]).iloc[0]
    digits = f"{area}{exchange}{number:04d}"
    assert digits not in re.sub(r"\D", "", out)
    assert "[PHONE]" in out and out.startswith(before)


def test_redact_known_values_removes_the_rows_own_complainant_only() -> None:
    text = pa.array(
        ["Maria Lopez called; Ms. Lopez at 2135550134 x", "Ann said Lopez is a street", None]
    )
    others = pd.DataFrame(
        {
            "complainant_name": ["Maria Lopez", "Ann Lee", "Bo Li"],
            "complainant_phone": ["2135550134", None, "x"],
        }
    )
    out = redact_known_values(text, others).to_pylist()
    assert out[0] == "[COMPLAINANT_NAME] called; Ms. [COMPLAINANT_NAME] at [COMPLAINANT_PHONE] x"
    assert (
        out[1] == "[COMPLAINANT_NAME] said Lopez is a street"
    )  # row 2's complainant is Ann Lee, not Lopez
    assert out[2] is None


# -- small counts ------------------------------------------------------------------------


@NO_DEADLINE
@given(
    st.lists(st.one_of(st.none(), st.integers(0, 50)), min_size=1, max_size=40), st.integers(1, 20)
)
def test_small_counts_never_published_as_the_number(counts: list, threshold: int) -> None:
    out = suppress_small_counts(series(counts, "Int64"), threshold)
    for before, after in zip(counts, out.tolist(), strict=True):
        if before is None or 0 < before < threshold:
            assert pd.isna(after)
        else:
            assert after == before
