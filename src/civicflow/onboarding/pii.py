"""Flag likely personal data in a profiled column and suggest a privacy rule for it.

Values are read with the privacy scan's own detectors (``civicflow.privacy.detectors``),
over each column's distinct values, so what the draft flags is what the scan would
block at publish time; headers add what values cannot show (an empty VIN column, a
house number, a complainant's name). Every suggested rule carries a suggested reason
the steward must confirm (the draft marks it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from civicflow.onboarding.profile import ColumnProfile
from civicflow.privacy.consistency import HOUSE_NUMBER_NAME
from civicflow.privacy.detectors import ADDRESS_IN_ADDRESS_COLUMN, DETECTORS, Detector

#: distinct values read per column (a sample beyond this; the scan at publish reads all)
MAX_DISTINCT = 500_000
#: decimals kept on coordinates: about 100 m, a hundred block
ROUND_DECIMALS = 3
_PERSON = {"complainant", "owner", "applicant", "tenant", "resident", "caller", "contact"}
_PERSON |= {"reporter", "requester", "requestor", "victim", "suspect", "patient", "customer"}
_PERSON |= {"employee", "driver", "first", "last", "full", "person", "witness", "inspector"}
_CONTACT = {"email", "phone", "telephone", "tel", "mobile", "cell", "fax"}


@dataclass
class Suggestion:
    """What the draft proposes for one column beyond its type."""

    type: str | None = None
    semantic: str | None = None
    precision: int | None = None
    #: the privacy rule without its reason (the reason is marked for the steward)
    rule: dict[str, Any] | None = None
    reason: str = ""
    decide: str = ""
    #: detectors that fired on the values, with the share of rows they fired on
    found: dict[str, float] = field(default_factory=dict)
    note: str | None = None


def detector_shares(values: pa.ChunkedArray) -> dict[str, float]:
    """Share of non-empty rows each detector fires on (the address-column pattern as
    ``address_column``), read once per distinct value."""
    counted = pc.value_counts(values.drop_null())
    distinct, counts = counted.field("values"), np.asarray(counted.field("counts"))
    if len(distinct) > MAX_DISTINCT:
        distinct, counts = distinct.slice(0, MAX_DISTINCT), counts[:MAX_DISTINCT]
    total = counts.sum()
    detectors: list[tuple[str, Detector]] = [(d.name, d) for d in DETECTORS.values()]
    detectors.append(("address_column", ADDRESS_IN_ADDRESS_COLUMN))
    shares = {}
    for name, detector in detectors:
        hit = detector.find(distinct) if len(distinct) else np.zeros(0, dtype=bool)
        if hit.any():
            shares[name] = float(counts[hit].sum() / total)
    return shares


def _tokens(name: str) -> set[str]:
    return set(name.split("_"))


def _coordinate_axis(name: str) -> str | None:
    tokens = _tokens(name)
    if tokens & {"lat", "latitude"}:
        return "latitude"
    if tokens & {"lon", "lng", "long", "longitude"}:
        return "longitude"
    return None


def _rounded(semantic: str | None, decimals: int, what: str) -> Suggestion:
    """Coordinates finer than a block: rounded to 3 decimals, the reason marked."""
    if decimals <= ROUND_DECIMALS:
        return Suggestion(semantic=semantic, precision=decimals)
    return Suggestion(
        semantic=semantic,
        precision=ROUND_DECIMALS if semantic else None,
        rule={"rule": "generalise", "method": "round", "decimals": ROUND_DECIMALS},
        reason=f"The source's {decimals} decimals pin {what} to one building; "
        f"{ROUND_DECIMALS} decimals (about 100 m) match a hundred block.",
        decide="are these a person's location? round them (as here), drop them, or, for "
        "public places such as areas' centroids, remove the rule and set precision",
    )


def _coordinates(col: ColumnProfile) -> Suggestion | None:
    if col.type == "geopoint":
        return _rounded("geopoint", col.decimals, "each point")
    if col.type not in ("number", "integer") or col.minimum is None or col.maximum is None:
        return None
    lo, hi = float(col.minimum), float(col.maximum)
    axis = _coordinate_axis(col.name)
    if axis is not None:
        limit = 90 if axis == "latitude" else 180
        if -limit <= lo and hi <= limit:
            return _rounded(axis, col.decimals, "each point")
        return Suggestion(
            rule={"rule": "drop"},
            reason="Projected coordinates (not degrees) pin exact locations; dropped until a "
            "reproject transform and rounding are set up.",
            decide="these are not degrees (a projection such as State Plane feet?): drop them, "
            "or add a reproject transform and round them",
            note=f"{col.source}: values {lo:,.1f} to {hi:,.1f} are not degrees.",
        )
    # An unnamed column that reads like coordinates is held by the scan all the same.
    fine = col.type == "number" and col.decimals > ROUND_DECIMALS
    if fine and lo >= -180 and hi <= 180 and max(abs(lo), abs(hi)) > 1:
        return _rounded(None, col.decimals, "what may be a location")
    return None


def _by_header(col: ColumnProfile) -> Suggestion | None:
    tokens = _tokens(col.name)
    if HOUSE_NUMBER_NAME.fullmatch(col.name):
        return Suggestion(
            semantic="address",
            rule={"rule": "drop"},
            reason="An exact house number beside a block address would undo the block.",
            decide="drop the house number (the address column keeps the block) or generalise it",
        )
    if tokens & {"birth", "dob", "birthdate"}:
        if col.type in ("date", "datetime"):
            rule = {"rule": "generalise", "method": "truncate", "truncate_to": "year"}
            return Suggestion(
                semantic="birth_date",
                rule=rule,
                reason="A full birth date identifies a person; the year is enough.",
                decide="keep the birth year only, or drop the column",
            )
        return _drop(
            "A birth date identifies a person.", "drop it, or type it as a date and keep the year"
        )
    aged = col.name == "age" or col.name.endswith("_age")
    if aged and col.type in ("integer", "number"):
        return Suggestion(
            rule={"rule": "generalise", "method": "age_band", "band_width": 10},
            reason="An exact age beside a place and a date can identify a person; "
            "10-year bands keep the distribution.",
            decide="publish 10-year age bands, other bands, or drop the column",
        )
    last = col.name.rsplit("_", 1)[-1]
    if last == "name" and tokens & _PERSON:
        return _drop("A person's name; no public use needs it.", "drop the name, or hash it")
    if last in _CONTACT or col.name in ("e_mail", "email_address", "phone_number"):
        return _drop(
            "Personal contact details; no public use needs them.",
            "drop it, or allow it with pii_allow if it is a public office line or mailbox",
        )
    if col.name == "vin" or col.name.endswith("_vin") or tokens >= {"license", "plate"}:
        return Suggestion(
            rule={"rule": "hash"},
            reason="Identifies one vehicle and, through DMV records, its owner; a keyed hash "
            "keeps repeats linkable without revealing it.",
            decide="hash (needs CIVICFLOW_HASH_KEY) or drop the vehicle identifier",
        )
    return None


def _drop(reason: str, decide: str) -> Suggestion:
    return Suggestion(rule={"rule": "drop"}, reason=reason, decide=decide)


def _free_text(col: ColumnProfile) -> bool:
    return col.type == "string" and col.mean_length >= 40 and col.distinct >= col.present / 2


def _by_values(col: ColumnProfile, values: pa.ChunkedArray) -> Suggestion | None:
    shares = detector_shares(values)
    if _free_text(col):
        return Suggestion(
            semantic="free_text",
            rule={"rule": "redact"},
            reason="Free text can name people and give their phone numbers, e-mails and "
            "addresses; those are replaced by placeholders.",
            decide="redact (as here), drop the text, or name dropped columns whose values "
            "the text repeats in redact_values_of",
            found=shares,
        )
    address = shares.get("address_column", 0.0)
    if address >= 0.5 or (address >= 0.1 and _tokens(col.name) & {"address", "addr", "location"}):
        return Suggestion(
            semantic="address",
            rule={"rule": "generalise", "method": "hundred_block"},
            reason="Exact addresses can point at a resident's home; the hundred block is "
            "enough to map and route the work.",
            decide="publish the hundred block (as here), drop the column, or allow exact "
            "addresses with a written reason if they are public places",
            found=shares,
        )
    if shares.get("email", 0.0) >= 0.5 or shares.get("phone", 0.0) >= 0.5:
        suggestion = _drop(
            "Contact details; no public use needs them.",
            "drop them, or allow them with pii_allow if they are public office contacts",
        )
        suggestion.found = shares
        return suggestion
    text = sorted(name for name in shares if name in DETECTORS)
    if text:
        return Suggestion(
            rule={"rule": "redact", "detectors": text},
            reason=f"Some values hold {', '.join(n.replace('_', ' ') for n in text)} "
            "details; those are replaced by placeholders.",
            decide="redact them (as here), drop the column, or allow them with pii_allow",
            found=shares,
        )
    return None


def suggest(col: ColumnProfile, values: pa.ChunkedArray) -> Suggestion | None:
    """The privacy suggestion for one column, or None when nothing looks personal."""
    found = _coordinates(col) or _by_header(col)
    if found is None and col.type == "string" and col.present:
        found = _by_values(col, values)
    if found is None and _tokens(col.name) & {"zip", "zipcode", "postal"}:
        # A ZIP code is text: leading zeros matter and it is not a quantity.
        found = Suggestion(type="string", semantic="zip_code")
    if found is None and re.search(r"(^|_)(id|number|no)$", col.name) and col.unique:
        found = Suggestion(semantic="identifier")
    return found
