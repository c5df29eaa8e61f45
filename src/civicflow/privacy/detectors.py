"""PII detectors shared by the ``redact`` rule and the scan, registered by name.

Each detector is a regular expression written in the common subset of RE2 (what Arrow
compute runs, vectorised over a whole column) and Python ``re`` (used only on the few
candidate values a checksum has to confirm). Patterns are tuned for precision on
civic data: service request numbers (``1-870704831``), ticket and case numbers, dates
and ZIP codes must not look like phones or cards, so

- phones must be written as phones (``(213) 555-0134``, ``213.555.0134``,
  ``+1-213-555-0134``), or be a bare 10-digit number right after a cue word
  (``call 2135550134``); a bare 10-digit number alone is a ticket number as often as a phone;
- card numbers must pass the Luhn check and start like a card (2-6);
- VINs must carry a valid check digit (position 9), a letter and a digit;
- SSNs must be written ``AAA-GG-SSSS`` (or with spaces) with valid area/group/serial;
- person names are found only after an honorific (English or Spanish: ``Mr. Lopez``,
  ``Sra. Hernández``, ``MR. JOHNSON``) or a role cue (``complainant Maria Lopez``,
  ``SPOKE WITH MARIA LOPEZ``), in title case or capitals; a span whose first word is a
  common word of civic notes (``Owner Occupied``, ``per Building Code``) is not a name.
  Names without a cue are not found (use ``redact_values_of`` to remove known names);
- street addresses need a house number and a street type after the name
  (``1234 W MAIN ST``) or before it (``13415 VIA MARINA``, ``1901 AVENUE OF THE STARS``);
  the number may be glued to a direction (``2209E``), carry a fraction (``1808-1/2``) or
  end a range (``100-110``). Hundred-block numbers (``1200 W MAIN ST``) are already
  generalised and not findings; numbered streets (``AVENUE 50``) are not house numbers.

Precision and recall on a labelled set: tests/privacy_data/labelled.csv (asserted in
tests/test_privacy_detectors.py, printed by benchmarks/bench_privacy.py).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

# Numbered street names ("AVENUE 50", "HWY 101"): the number is part of the name, not a
# house number. Shielding puts a "_" before it (a word character, so no house-number
# pattern starts there) and unshielding takes it away; both are one vectorised pass.
_NUMBERED_STREET = r"(\b(?i:AVE|AVENUE|HWY|HIGHWAY|ROUTE|RTE)\s+)"
_SHIELD_RE = re.compile(_NUMBERED_STREET + r"(\d)")


def shield_numbered_streets(values: pa.Array) -> pa.Array:
    return pc.replace_substring_regex(values, _NUMBERED_STREET + r"(\d)", r"\1_\2")


def unshield_numbered_streets(values: pa.Array) -> pa.Array:
    return pc.replace_substring_regex(values, _NUMBERED_STREET + r"_(\d)", r"\1\2")


@dataclass(frozen=True)
class Detector:
    """One kind of PII: a pattern, an optional per-match check, a placeholder label."""

    name: str
    label: str
    pattern: str
    #: confirms one matched span (checksums); None means every match counts
    check: Callable[[str], bool] | None = None
    #: group 1 of the pattern is a cue word kept when redacting ("call [PHONE]")
    keep_prefix: bool = False
    #: False for scan-only detectors that redact should not apply by default
    redacts: bool = True
    #: True for address patterns: numbered street names are not house numbers
    shield: bool = False

    @property
    def placeholder(self) -> str:
        return f"[{self.label}]"

    @cached_property
    def regex(self) -> re.Pattern[str]:
        return re.compile(self.pattern)

    def _span(self, m: re.Match[str]) -> str:
        return m.group(0)[len(m.group(1) or "") :] if self.keep_prefix else m.group(0)

    def spans(self, text: str) -> list[str]:
        """The PII spans in one value (Python; used for candidates and report examples)."""
        if self.shield:
            text = _SHIELD_RE.sub(r"\1_\2", text)
        found = (self._span(m) for m in self.regex.finditer(text))
        spans = [s for s in found if self.check is None or self.check(s)]
        return [s.replace("_", "") for s in spans] if self.shield else spans

    def candidates(self, values: pa.Array) -> np.ndarray:
        """Rows whose text matches the pattern (vectorised, before any check)."""
        if self.shield:
            values = shield_numbered_streets(values)
        hit = pc.fill_null(pc.match_substring_regex(values, self.pattern), False)
        return np.asarray(hit.to_numpy(zero_copy_only=False), dtype=bool)

    def find(self, values: pa.Array) -> np.ndarray:
        """Boolean mask of rows holding at least one confirmed finding."""
        hit = self.candidates(values)
        if self.check is None or not hit.any():
            return hit
        idx = np.flatnonzero(hit)
        codes, uniques = pd.factorize(
            pd.Series(values.take(pa.array(idx)).to_pylist(), dtype=object)
        )
        confirmed = np.fromiter(
            (bool(self.spans(u)) for u in uniques), dtype=bool, count=len(uniques)
        )
        hit[idx] = confirmed[codes]
        return hit

    def redact(self, values: pa.Array) -> pa.Array:
        """Replace every confirmed span with the placeholder (cue words kept)."""
        replacement = (r"\1" if self.keep_prefix else "") + self.placeholder
        if self.shield:
            shielded = shield_numbered_streets(values)
            return unshield_numbered_streets(
                pc.replace_substring_regex(shielded, self.pattern, replacement)
            )
        if self.check is None:
            return pc.replace_substring_regex(values, self.pattern, replacement)
        hit = self.candidates(values)
        if not hit.any():
            return values
        # Checksums need Python, so only candidate rows go through it, once per distinct value.
        idx = np.flatnonzero(hit)
        codes, uniques = pd.factorize(
            pd.Series(values.take(pa.array(idx)).to_pylist(), dtype=object)
        )
        fixed = np.array([self.regex.sub(self._sub, u) for u in uniques], dtype=object)
        return pc.replace_with_mask(values, pa.array(hit), pa.array(fixed[codes], type=values.type))

    def _sub(self, m: re.Match[str]) -> str:
        span = self._span(m)
        if self.check is not None and not self.check(span):
            return m.group(0)
        prefix = (m.group(1) or "") if self.keep_prefix else ""
        return prefix + self.placeholder


# -- checks -----------------------------------------------------------------------


def luhn_ok(digits: str) -> bool:
    """The Luhn checksum of a digit string (vectorised over its digits with numpy)."""
    d = np.frombuffer(digits.encode("ascii"), dtype=np.uint8) - 48
    doubled = d[::-1].astype(np.int64)
    doubled[1::2] *= 2
    doubled[doubled > 9] -= 9
    return int(doubled.sum()) % 10 == 0


def _card_grouping(span: str) -> bool:
    """Cards are written solid or in groups of 4 (Amex 4-6-5): permit numbers (5-5-5) are not cards."""
    groups = [len(g) for g in re.split(r"[ -]", span)]
    if len(groups) == 1:
        return True
    return groups in ([4, 6, 5], [4, 6, 4]) or (
        all(g == 4 for g in groups[:-1]) and 1 <= groups[-1] <= 4
    )


def card_ok(span: str) -> bool:
    digits = re.sub(r"\D", "", span)
    if not 13 <= len(digits) <= 19 or not _card_grouping(span):
        return False
    # Issuer prefixes: 3 (Amex, Diners, JCB), 4 (Visa), 5 (Mastercard), 6 (Discover, UnionPay), 2221-2720.
    if digits[0] not in "3456" and not 2221 <= int(digits[:4]) <= 2720:
        return False
    return luhn_ok(digits)


_VIN_VALUES = {
    **{str(i): i for i in range(10)},
    **dict(zip("ABCDEFGH", range(1, 9), strict=True)),
    **dict(zip("JKLMN", range(1, 6), strict=True)),
    "P": 7,
    "R": 9,
    **dict(zip("STUVWXYZ", range(2, 10), strict=True)),
}
_VIN_WEIGHTS = (8, 7, 6, 5, 4, 3, 2, 10, 0, 9, 8, 7, 6, 5, 4, 3, 2)


def vin_ok(span: str) -> bool:
    """North American VIN check digit (49 CFR 565): position 9 is the weighted sum mod 11."""
    vin = span.upper()
    if len(vin) != 17 or not any(c.isalpha() for c in vin) or not any(c.isdigit() for c in vin):
        return False
    try:
        total = sum(_VIN_VALUES[c] * w for c, w in zip(vin, _VIN_WEIGHTS, strict=True))
    except KeyError:  # I, O, Q never appear in a VIN
        return False
    check = total % 11
    return vin[8] == ("X" if check == 10 else str(check))


def ssn_ok(span: str) -> bool:
    area, group, serial = re.split(r"[- ]", span)
    return (
        area not in ("000", "666")
        and not area.startswith("9")
        and group != "00"
        and serial != "0000"
    )


# -- patterns -----------------------------------------------------------------------

_SEP = r"[-. ]"
_PHONE_FORMATTED = (
    r"(?:(?:\+1|\b1|\b001)[-. ]?)?"
    r"(?:\(\s*[2-9]\d{2}\s*\)\s*|\b[2-9]\d{2}" + _SEP + r")"
    r"[2-9]\d{2}" + _SEP + r"\d{4}"
    r"(?:\s*(?:x|ext\.?)\s*\d{1,5}\b|\b)"
)
_PHONE_CUED = (
    r"(\b(?i:(?:call(?:ed)?|phone|tel|cell|mobile|ph|text(?:ed)?|reach(?:ed)?|contact(?:ed)?|fax|voicemail|message)(?:\s+back)?)\b"
    r"\W{0,3}(?:(?i:at|on|is|no|number|to)\b\W{0,3})?)"
    r"(?:\+?1)?[2-9]\d{2}[2-9]\d{6}\b"
)
# Honorifics in English and Spanish (Sr., Sra., Srta.), longest first. In capitals they
# need their period: "SR Created" is a service request and "HUNTINGTON DR NORTH" a drive.
_HONORIFIC = (
    r"(?:(?:Mrs|Mr|Ms|Mx|Miss|Dr|Srta|Sra|Sres|Sr)\.?|(?:MRS|MR|MS|MISS|DR|SRTA|SRA|SRES|SR)\.)"
)
_ROLE = r"(?i:complainant|owner|tenant|resident|neighbou?r|caller|landlord|manager|reporting party|spoke (?:with|to)|met with|called|contacted|per)"
# A name word in title case (Lopez, O'Brien, García) or in capitals (LOPEZ): Latin-1
# letters so accented names are whole, written as ranges both RE2 and Python read.
_UPPER = "A-ZÀ-ÖØ-Þ"
_LOWER = "a-zß-öø-ÿ"
_NAME_WORD = f"(?:[{_UPPER}][{_UPPER}{_LOWER}'-]*[{_LOWER}]|[{_UPPER}][{_UPPER}'-]*[{_UPPER}])"
_PERSON = (
    r"(\b(?:"
    + _HONORIFIC
    + r"|"
    + _ROLE
    + r"(?:\s+"
    + _HONORIFIC
    + r")?)\s+)"
    + _NAME_WORD
    + r"(?:\s+"
    + _NAME_WORD
    + r"){0,2}"
)
# Capitalised words that follow a cue without being a name ("Owner Occupied", "per
# Building Code", "SPOKE WITH OWNER RE: TRASH"): a span whose first word is one of them
# is not a finding. Kept to words seen in civic notes; a name is never dropped for a later word.
NOT_A_NAME = frozenset(
    [
        "A",
        "ABOUT",
        "ADDRESS",
        "AGAIN",
        "BUILDER",
        "DIEM",
        "AGENCY",
        "AGENT",
        "ALL",
        "AN",
        "AND",
        "ANIMAL",
        "ANONYMOUS",
        "APARTMENT",
        "APT",
        "AS",
        "AT",
        "ATTORNEY",
        "BACK",
        "BOARD",
        "BOS",
        "BSL",
        "BUILDING",
        "BUREAU",
        "BUSINESS",
        "BY",
        "CALL",
        "CALLED",
        "CASE",
        "CITY",
        "CITATION",
        "CODE",
        "CODES",
        "COMMUNITY",
        "COMPANY",
        "COMPLAINANT",
        "COMPLAINT",
        "CONTRACTOR",
        "COUNCIL",
        "COUNTY",
        "COURT",
        "DEPARTMENT",
        "DEPT",
        "DID",
        "DIVISION",
        "DOOR",
        "EMAIL",
        "ENFORCEMENT",
        "ENGINEER",
        "ENTRY",
        "FIRE",
        "FOR",
        "FRONT",
        "FROM",
        "GARAGE",
        "GAS",
        "HABITABILITY",
        "HAS",
        "HE",
        "HEALTH",
        "HER",
        "HIM",
        "HIS",
        "HOUSING",
        "IN",
        "INSPECTION",
        "INSPECTOR",
        "IS",
        "IT",
        "ITA",
        "LADBS",
        "LADOT",
        "LADWP",
        "LAMC",
        "LAPD",
        "LEAD",
        "LEASING",
        "LOT",
        "MAIL",
        "MAINTENANCE",
        "MANAGEMENT",
        "MANAGER",
        "NEIGHBOR",
        "NEIGHBOUR",
        "NO",
        "NOT",
        "NOTICE",
        "OCB",
        "OCCUPANT",
        "OCCUPIED",
        "OF",
        "OFFICE",
        "OFFICER",
        "ON",
        "OR",
        "ORDER",
        "OWNER",
        "OWNERS",
        "PARKING",
        "PER",
        "PERMIT",
        "PHONE",
        "PLAN",
        "POLICE",
        "PRIOR",
        "PROGRAM",
        "PROPERTY",
        "RE",
        "REAR",
        "REGARDING",
        "REPORT",
        "REPORTS",
        "RESIDENT",
        "RESIDENTS",
        "SAFETY",
        "SAID",
        "SANITATION",
        "SAYS",
        "SERVICES",
        "SHE",
        "SITE",
        "STAFF",
        "STATE",
        "STATES",
        "STREET",
        "TENANT",
        "TENANTS",
        "THE",
        "THEIR",
        "THEY",
        "THIS",
        "TO",
        "UNIT",
        "UNKNOWN",
        "UPON",
        "VIA",
        "VOICEMAIL",
        "WAS",
        "WITH",
        "ZONING",
        "NORTH",
        "SOUTH",
        "EAST",
        "WEST",
        "CREATED",
        "CLOSED",
        "OPEN",
    ]
)


def name_ok(span: str) -> bool:
    """A cued span is a name unless its first word is a common word of civic notes."""
    first = span.split(None, 1)[0].strip("'-").upper()
    return first not in NOT_A_NAME


_SUFFIX = r"(?i:ST|STREET|AVE?|AVENUE|BLVD|BOULEVARD|DR|DRIVE|RD|ROAD|WAY|PL|PLACE|LN|LANE|CT|COURT|TER|TERRACE|PKWY|PARKWAY|HWY|HIGHWAY|CIR|CIRCLE)"
# An exact house number: 1-6 digits not ending in 00 (hundred blocks such as 1200 are
# already generalised), at a word start that is not the denominator of a fraction
# ("153 7/8 S ..."). Group 1 (the character before it) is kept when redacting. Written
# as a pattern, not a Python check, so the whole column is matched in one Arrow call.
_EXACT_NUMBER = r"(?:\d{0,4}(?:[1-9]\d|0[1-9])|[1-9])"
# The number may be glued to a direction ("2209E MICHIGAN AVE") or to the "at front"
# qualifier ("AF4421 ORCHARD AVE"), or carry a fraction ("1234 1/2", "1808-1/2"); a range
# ("100-110 N MAIN ST") is found by its exact second number.
_HOUSE = r"(^|[^\w/]|\bA/?F)" + _EXACT_NUMBER + r"(?:[NSEW]|-\d/\d|\s+\d/\d)?\s+(?:[NSEW]\.?\s+)?"
# Street types written before the name (VIA MARINA, AVENUE OF THE STARS, Calle de la Paz),
# in capitals or title case so "2 via email" is not an address.
_PREFIX_TYPE = (
    r"(?:VIA|Via|AVENIDA|Avenida|AVENUE|Avenue|CALLE|Calle|CAMINO|Camino|PASEO|Paseo"
    r"|PLAZA|Plaza|ALAMEDA|Alameda|RUE|Rue)\s+(?:(?i:of the|de la|de los|del|de)\s+)?"
    r"_?[A-Z0-9][A-Za-z0-9'-]*(?:\s+[A-Z][A-Za-z'-]*){0,2}"  # _: a shielded "AVENUE 50"
)
STREET_ADDRESS_PATTERN = (
    _HOUSE
    + r"(?:(?:[A-Za-z0-9'.-]*[A-Za-z][A-Za-z0-9'.-]*\s+){1,4}?"
    + _SUFFIX
    + r"\b|"
    + _PREFIX_TYPE
    + r")"
)
#: in a column declared ``semantic: address`` any house number followed by a street word is an address
ADDRESS_COLUMN_PATTERN = _HOUSE + r"\w*[A-Za-z]\w*"

DETECTORS: dict[str, Detector] = {}


def register_detector(detector: Detector) -> Detector:
    DETECTORS[detector.name] = detector
    return detector


EMAIL = register_detector(
    Detector(
        "email", "EMAIL", r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b"
    )
)
PHONE = register_detector(
    Detector("phone", "PHONE", _PHONE_FORMATTED + "|" + _PHONE_CUED, keep_prefix=True)
)
SSN = register_detector(
    Detector("ssn", "SSN", r"\b\d{3}-\d{2}-\d{4}\b|\b\d{3} \d{2} \d{4}\b", check=ssn_ok)
)
CARD = register_detector(Detector("card", "CARD", r"\b(?:\d[ -]?){12,18}\d\b", check=card_ok))
VIN = register_detector(Detector("vin", "VIN", r"\b[A-HJ-NPR-Za-hj-npr-z0-9]{17}\b", check=vin_ok))
PERSON_NAME = register_detector(
    Detector("person_name", "NAME", _PERSON, check=name_ok, keep_prefix=True)
)
STREET_ADDRESS = register_detector(
    Detector("street_address", "ADDRESS", STREET_ADDRESS_PATTERN, keep_prefix=True, shield=True)
)
ADDRESS_IN_ADDRESS_COLUMN = Detector(
    "street_address", "ADDRESS", ADDRESS_COLUMN_PATTERN, keep_prefix=True, shield=True
)

#: scan-only detectors implemented in scan.py, numbers.py and consistency.py
COORDINATE = "coordinate"
BIRTH_DATE = "birth_date"
FINER_LOCATION = "finer_location"
SCAN_ONLY = (COORDINATE, BIRTH_DATE, FINER_LOCATION)


def detector_names() -> list[str]:
    """Every name a spec may use in ``pii_allow`` (``redact.detectors`` takes DETECTORS only)."""
    return sorted([*DETECTORS, *SCAN_ONLY])


def mask(span: str) -> str:
    """A finding as shown in reports: letters and digits starred except the last two."""
    keep = 2 if len(span) > 4 else 0
    head, tail = span[: len(span) - keep], span[len(span) - keep :]
    return re.sub(r"[A-Za-z0-9]", "*", head) + tail


def as_text(values: pd.Series) -> pa.Array:
    """A column as an Arrow string array (nulls stay null)."""
    arr = pa.array(values, from_pandas=True)
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    return (
        arr
        if pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)
        else pc.cast(arr, pa.string())
    )


def on_distinct(values: pa.Array, fn: Callable[[pa.Array], pa.Array]) -> pa.Array:
    """``fn(values)``, computed once per distinct value when the values repeat (at most
    half as many distinct as rows: addresses, locations). ``fn`` maps element-wise and
    null to null."""
    encoded = pc.dictionary_encode(values)
    if len(encoded.dictionary) > len(values) // 2:
        return fn(values)
    return fn(encoded.dictionary).take(encoded.indices)


#: one number, or two as a ``(lat, lon)`` pair (the parentheses optional)
NUMBER_PAIR = (
    r"^\s*\(?\s*(?P<first>[-+]?\d+(?:\.\d+)?)\s*"
    r"(?:,\s*(?P<second>[-+]?\d+(?:\.\d+)?)\s*\)?)?\s*$"
)


def number_parts(values: pd.Series) -> tuple[pa.Array, pa.Array]:
    """The first and second number of each value as text; null where there is none.

    Arrow's RE2 over the whole column: a Python regex per row (pandas ``str.extract``)
    took 5 s per million geopoints, and location columns are read several times.
    """
    return text_number_parts(as_text(values))


def text_number_parts(text: pa.Array) -> tuple[pa.Array, pa.Array]:
    """``number_parts`` of an Arrow string array."""
    parts = on_distinct(text, lambda distinct: pc.extract_regex(distinct, NUMBER_PAIR))
    first, second = (pc.struct_field(parts, name) for name in ("first", "second"))
    # An optional group that did not take part comes back as "", not null.
    second = pc.if_else(pc.equal(second, ""), pa.scalar(None, pa.string()), second)
    return first, second
