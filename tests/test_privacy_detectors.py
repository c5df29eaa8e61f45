"""Detector precision and recall on a labelled sample of civic-data text, and checksums."""

from __future__ import annotations

import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from civicflow.privacy.detectors import (
    _VIN_VALUES,
    _VIN_WEIGHTS,
    ADDRESS_IN_ADDRESS_COLUMN,
    DETECTORS,
    STREET_ADDRESS,
    card_ok,
    luhn_ok,
    mask,
    vin_ok,
)
from civicflow.privacy.generalise import hundred_block_text

# (text, detectors that must fire). Lookalikes carry an empty set: nothing may fire.
LABELLED: list[tuple[str, set[str]]] = [
    # phones as people write them
    ("Call (213) 555-0134 after 5", {"phone"}),
    ("cell 213.555.0134", {"phone"}),
    ("reach her at 213-555-0134x22", {"phone"}),
    ("+1-818-555-0199", {"phone"}),
    ("001-310-555-0123x4455", {"phone"}),
    ("called back at 2135550134 today", {"phone"}),
    ("Voicemail: 3105550123", {"phone"}),
    # e-mails, SSNs, cards, VINs
    ("sent photos to maria.lopez@example.com", {"email"}),
    ("owner (j_smith+ladbs@mail.example.org)", {"email"}),
    ("SSN 123-45-6789 on the form", {"ssn"}),
    ("paid with 4111 1111 1111 1111", {"card"}),
    ("card 5500-0000-0000-0004 declined", {"card"}),
    ("amex 3782 822463 10005", {"card"}),
    ("VIN 1M8GDM9AXKP042788 on the dash", {"vin"}),
    ("vin 1hgcm82633a004352", {"vin"}),
    # names after a cue, addresses in free text
    ("Spoke with Maria Lopez at the door", {"person_name"}),
    ("Ms. O'Brien says the work is done", {"person_name"}),
    ("Complainant Dwayne McDonald-Smith called", {"person_name"}),
    ("Inspected 2111 W Bellevue Ave, 90026", {"street_address"}),
    ("posted at 13147 WELBY WAY.", {"street_address"}),
    # lookalikes: service request, ticket, case, permit numbers, dates, ZIPs, codes, times
    ("SR 1-870704831 closed", set()),
    ("SR number 1-1234567890", set()),
    ("ticket 1103341116", set()),
    ("citation 4272345678 issued", set()),
    ("Related case CE-2024-001234", set()),
    ("Permit 24010-10000-01234 applied for", set()),
    ("re-inspect 2024-03-15 and 12/21/2015", set()),
    ("ZIP 90026-1234", set()),
    ("ZIP 90026", set()),
    ("LAMC 91.8104 and 12.21 A.1(a)", set()),
    ("violation 80.69BS, code 8.06E+07", set()),
    ("issued at 1251, marked 1122", set()),
    ("(34.073216645, -118.266861909)", set()),
    ("4111111111111112 is not a card (Luhn)", set()),
    ("1M8GDM9A1KP042788 has a bad check digit", set()),
    ("000-12-3456 is not a valid SSN", set()),
    ("12345678901234567 is all digits", set()),
    ("2100 W BELLEVUE AVE is the hundred block", set()),
    ("Owner occupied, complainant reports noise", set()),
    ("BOS Sanitation, OCB Community Beautification", set()),
    ("Mitch O'Farrell", set()),
    ("213 555 01", set()),
]


@pytest.mark.parametrize("name", sorted(DETECTORS))
def test_detector_precision_and_recall_on_the_labelled_sample(name: str) -> None:
    detector = DETECTORS[name]
    found = detector.find(pa.array([text for text, _ in LABELLED]))
    truth = [name in labels for _, labels in LABELLED]
    false_pos = [
        text for (text, _), f, t in zip(LABELLED, found, truth, strict=True) if f and not t
    ]
    missed = [text for (text, _), f, t in zip(LABELLED, found, truth, strict=True) if t and not f]
    assert false_pos == [], f"{name} flagged lookalikes"
    assert missed == [], f"{name} missed real ones"
    assert sum(truth) > 0  # every detector has positives in the sample


def test_vectorised_find_agrees_with_per_value_spans() -> None:
    texts = [text for text, _ in LABELLED]
    for detector in DETECTORS.values():
        found = detector.find(pa.array(texts))
        assert list(found) == [bool(detector.spans(t)) for t in texts], detector.name


def test_declared_address_columns_need_no_suffix_but_skip_hundred_blocks() -> None:
    values = pa.array(
        [
            "13147 WELBY",
            "6161 SEPULVEDA",
            "13100 WELBY",
            "GEORGIA ST/OLYMPIC",
            "100 7/8 S BERENDO ST",
            None,
        ]
    )
    assert list(ADDRESS_IN_ADDRESS_COLUMN.find(values)) == [True, True, False, False, False, False]


def _with_luhn_digit(body: str) -> str:
    for d in "0123456789":
        if luhn_ok(body + d):
            return body + d
    raise AssertionError("unreachable: one check digit always fits")


@given(
    st.sampled_from(["4", "51", "55", "34", "37", "6011", "2221"]), st.integers(12, 18), st.data()
)
def test_every_luhn_valid_card_is_found_and_one_wrong_digit_is_not(
    prefix: str, length: int, data: st.DataObject
) -> None:
    body = prefix + data.draw(
        st.text("0123456789", min_size=length - len(prefix), max_size=length - len(prefix))
    )
    card = _with_luhn_digit(body)
    assert 13 <= len(card) <= 19 and card_ok(card)
    assert DETECTORS["card"].find(pa.array([f"paid {card} ok"])).tolist() == [True]
    pos = data.draw(st.integers(len(prefix), len(card) - 1))
    wrong = card[:pos] + str((int(card[pos]) + data.draw(st.integers(1, 9))) % 10) + card[pos + 1 :]
    assert not luhn_ok(wrong)  # Luhn catches every single-digit error
    assert DETECTORS["card"].find(pa.array([f"paid {wrong} ok"])).tolist() == [False]


VIN_CHARS = "ABCDEFGHJKLMNPRSTUVWXYZ0123456789"


@given(
    st.text(VIN_CHARS, min_size=16, max_size=16).filter(
        lambda s: any(c.isalpha() for c in s) and any(c.isdigit() for c in s)
    )
)
def test_vins_with_a_valid_check_digit_are_found(chars: str) -> None:
    base = chars[:8] + "0" + chars[8:]
    total = sum(_VIN_VALUES[c] * w for c, w in zip(base, _VIN_WEIGHTS, strict=True)) % 11
    check = "X" if total == 10 else str(total)
    vin = base[:8] + check + base[9:]
    assert vin_ok(vin)
    assert DETECTORS["vin"].find(pa.array([f"VIN {vin}."])).tolist() == [True]
    wrong = vin[:8] + ("0" if check != "0" else "1") + vin[9:]
    assert not vin_ok(wrong)


def test_mask_hides_all_but_the_last_two_characters() -> None:
    assert mask("213-555-0134") == "***-***-**34"
    assert mask("maria@example.com") == "*****@*******.*om"
    assert mask("1234") == "****"


@given(
    number=st.integers(min_value=1, max_value=99999).filter(lambda n: n % 100 != 0),
    form=st.sampled_from(["{n} ", "{n}E ", "{n}N ", "{n} 1/2 ", "{n}-1/2 ", "{m}-{n} ", "AF{n} "]),
    direction=st.sampled_from(["", "N ", "W "]),
    fraction=st.sampled_from(["", "1/2 ", "7/8 "]),
    street=st.sampled_from(
        [
            "BELLEVUE AVE",
            "3RD ST",
            "WELBY WAY",
            "SEPULVEDA",
            "96TH ST/18A",
            "VIA MARINA",
            "AVENUE OF THE STARS",
            "AVENUE 50",
        ]
    ),
)
def test_scan_finds_every_exact_address_and_none_once_generalised(
    number: int, form: str, direction: str, fraction: str, street: str
) -> None:
    house = form.format(n=number, m=number // 100 * 100)
    address = f"{house}{fraction if form.endswith('} ') else ''}{direction}{street}"
    generalised = hundred_block_text(pa.array([address]))
    assert ADDRESS_IN_ADDRESS_COLUMN.find(pa.array([address])).tolist() == [True], address
    assert ADDRESS_IN_ADDRESS_COLUMN.find(generalised).tolist() == [False], generalised
    # In free text the address needs a street type, before or after the name.
    if street.endswith(("AVE", "ST", "WAY")) or street.startswith(("VIA", "AVENUE")):
        assert STREET_ADDRESS.find(pa.array([f"seen at {address}."])).tolist() == [True]
        assert STREET_ADDRESS.find(generalised).tolist() == [False]
