"""Generate the synthetic code enforcement extract bundled in data/code_enforcement_cases/.

A department's case export, as an inspector's system would hand it over: case number,
dates, status, violation, council district, property address, the complainant's name,
phone and e-mail, and the inspector's free-text notes. The notes mention complainants,
owners and neighbours by name, phone numbers and e-mails in the many ways people write
them, and lookalikes that are not PII (case, permit and service request numbers, dates,
ZIP codes, code sections), so the privacy rules have something real to do.

Deterministic: Faker and every choice use one fixed seed, so the same Faker version
writes byte-identical output. Run from the project folder:

    .venv/bin/python scripts/generate_code_enforcement.py            # (re)write the CSV
    .venv/bin/python scripts/generate_code_enforcement.py --check    # exit 1 if it differs
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
from datetime import date, timedelta
from pathlib import Path

from faker import Faker

SEED = 20261101
ROWS = 3000
OUT = (
    Path(__file__).resolve().parents[1]
    / "data"
    / "code_enforcement_cases"
    / "code_enforcement_cases.csv"
)
HEADER = [
    "Case Number",
    "Date Opened",
    "Date Closed",
    "Status",
    "Violation Type",
    "Council District",
    "Property Address",
    "Complainant Name",
    "Complainant Phone",
    "Complainant Email",
    "Inspector Notes",
]

# Real Los Angeles streets (every one written with its suffix) and ZIP codes.
STREETS = [
    ("SUNSET", "BLVD"),
    ("WILSHIRE", "BLVD"),
    ("FIGUEROA", "ST"),
    ("VERMONT", "AVE"),
    ("WESTERN", "AVE"),
    ("MELROSE", "AVE"),
    ("SANTA MONICA", "BLVD"),
    ("PICO", "BLVD"),
    ("OLYMPIC", "BLVD"),
    ("HOOVER", "ST"),
    ("ALVARADO", "ST"),
    ("GLENDALE", "BLVD"),
    ("VENTURA", "BLVD"),
    ("SEPULVEDA", "BLVD"),
    ("VAN NUYS", "BLVD"),
    ("RESEDA", "BLVD"),
    ("LANKERSHIM", "BLVD"),
    ("SHERMAN", "WAY"),
    ("ROSCOE", "BLVD"),
    ("MAGNOLIA", "BLVD"),
    ("CENTRAL", "AVE"),
    ("CRENSHAW", "BLVD"),
    ("LA BREA", "AVE"),
    ("FAIRFAX", "AVE"),
    ("HIGHLAND", "AVE"),
    ("BEVERLY", "BLVD"),
    ("3RD", "ST"),
    ("6TH", "ST"),
    ("MAIN", "ST"),
    ("SLAUSON", "AVE"),
    ("MANCHESTER", "AVE"),
    ("FLORENCE", "AVE"),
    ("JEFFERSON", "BLVD"),
    ("ADAMS", "BLVD"),
    ("WASHINGTON", "BLVD"),
    ("VENICE", "BLVD"),
    ("BELLEVUE", "AVE"),
    ("MESA", "AVE"),
    ("EAGLE ROCK", "BLVD"),
    ("YORK", "BLVD"),
    ("COLORADO", "BLVD"),
    ("HUNTINGTON", "DR"),
    ("VALLEY", "BLVD"),
    ("WELBY", "WAY"),
    ("KELTON", "AVE"),
    ("DEEP DELL", "PL"),
    ("BONNY", "LN"),
    ("LEEWARD", "AVE"),
    ("HUBBARD", "ST"),
    ("CANYON LAKE", "DR"),
]
ZIPS = [
    "90004",
    "90006",
    "90011",
    "90019",
    "90026",
    "90027",
    "90031",
    "90032",
    "90037",
    "90042",
    "90044",
    "90065",
    "91331",
    "91340",
    "91342",
    "91402",
    "91405",
    "91406",
    "91605",
    "91606",
]
VIOLATIONS = [
    "Unpermitted Construction",
    "Substandard Housing",
    "Overgrown Vegetation",
    "Inoperable Vehicle",
    "Illegal Dumping",
    "Unpermitted Signage",
    "Fence Height",
    "Illegal Occupancy",
    "Graffiti",
    "Unapproved Use of Property",
]
OBSERVATIONS = [
    "unpermitted garage conversion with a kitchen",
    "trash and furniture piled in the front yard",
    "weeds over 12 inches along the fence line",
    "a vehicle on blocks in the driveway",
    "a rear addition framed without permits",
    "a fence about 8 ft high in the front setback",
    "banner signs on the building face",
    "no visible violation at time of inspection",
    "water heater vented into the attic",
    "fresh graffiti on the side wall",
]
STATUSES = ["Open", "Closed", "Closed", "Closed", "Referred to City Attorney"]


def _phone_in_other_words(phone: str) -> str:
    """The same number as an inspector might retype it: digits only, or dashed."""
    digits = "".join(ch for ch in phone.split("x")[0] if ch.isdigit())[-10:]
    return f"{digits[:3]}-{digits[3:6]}-{digits[6:]}"


def _notes(fake: Faker, row: dict[str, str], address_no_zip: str, opened: date) -> str:
    r = fake.random
    name, phone, email = row["Complainant Name"], row["Complainant Phone"], row["Complainant Email"]
    first, last = (name.split(" ", 1) + [""])[:2] if name else ("", "")
    visit = opened + timedelta(days=r.randint(1, 20))
    sentences = [f"Site visit {visit:%m/%d/%Y}: observed {r.choice(OBSERVATIONS)}."]
    if name:
        sentences.append(
            r.choice(
                [
                    f"Spoke with complainant {name}, who reports the problem started last month.",
                    f"Complainant {name} called again about the property.",
                    f"{r.choice(['Mr.', 'Ms.'])} {last} says work happens at night.",
                    f"{first} asked to stay anonymous to the owner.",
                    "Complainant asked for a status update by e-mail.",
                ]
            )
        )
        if r.random() < 0.45:
            sentences.append(
                r.choice(
                    [
                        f"Left voicemail for {first} at {phone}.",
                        f"Complainant can be reached at {phone} or {email}.",
                        f"Call back at {_phone_in_other_words(phone)} after 5 pm.",
                        f"Sent photos to {email}.",
                    ]
                )
            )
    if r.random() < 0.35:
        other = f"{fake.first_name()} {fake.last_name()}"
        sentences.append(
            r.choice(
                [
                    f"Owner {other} contacted; will call back at {fake.phone_number()}.",
                    f"Tenant {other} let us in; cell {fake.phone_number()}.",
                    f"Property manager {other} ({fake.company_email()}) requested a permit extension.",
                    f"Neighbor {other} confirms the dumping.",
                ]
            )
        )
    if r.random() < 0.3:
        sentences.append(
            r.choice([f"Inspected {address_no_zip}.", f"Posted notice at {address_no_zip}."])
        )
    if r.random() < 0.5:
        # Lookalikes the scan must leave alone.
        sentences.append(
            r.choice(
                [
                    f"Related case CE-{opened.year - 1}-{r.randint(1, 999999):06d}.",
                    f"Permit {opened.year % 100:02d}{r.randint(10, 99)}0-{r.randint(10000, 99999)}-{r.randint(10000, 99999)} applied for.",
                    f"Duplicate of 311 request 1-{r.randint(100000000, 999999999)}.",
                    f"Notice to comply issued under LAMC {r.choice(['91.8104', '91.8903', '12.21 A.1(a)', '11.5.7'])}.",
                    f"Re-inspection set for {visit + timedelta(days=30):%Y-%m-%d}.",
                    f"Parcel in ZIP {row['Property Address'][-5:]} flagged for follow-up.",
                    f"Citation {r.choice(['1', '4'])}{r.randint(100000000, 999999999)} issued to the vehicle.",
                ]
            )
        )
    return " ".join(sentences)


def generate(rows: int = ROWS, seed: int = SEED) -> str:
    fake = Faker("en_US")
    fake.seed_instance(seed)
    r = fake.random
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(HEADER)
    start = date(2024, 1, 1)
    for i in range(1, rows + 1):
        opened = start + timedelta(days=r.randint(0, 700))
        status = r.choice(STATUSES)
        closed = opened + timedelta(days=r.randint(3, 240)) if status != "Open" else None
        street, suffix = r.choice(STREETS)
        direction = r.choice(["", "N ", "S ", "E ", "W "])
        number = r.randint(100, 19999)
        address_no_zip = f"{number} {direction}{street} {suffix}"
        anonymous = r.random() < 0.2
        name = "" if anonymous else f"{fake.first_name()} {fake.last_name()}"
        row = {
            "Case Number": f"CE-{opened.year}-{i:06d}",
            "Date Opened": f"{opened:%m/%d/%Y}",
            "Date Closed": f"{closed:%m/%d/%Y}" if closed else "",
            "Status": status,
            "Violation Type": r.choice(VIOLATIONS),
            "Council District": str(r.randint(1, 15)),
            "Property Address": f"{address_no_zip}, {r.choice(ZIPS)}",
            "Complainant Name": name,
            "Complainant Phone": "" if anonymous else fake.phone_number(),
            "Complainant Email": "" if anonymous else fake.free_email(),
        }
        row["Inspector Notes"] = _notes(fake, row, address_no_zip, opened)
        writer.writerow([row.get(h, "") for h in HEADER])
    return out.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check",
        action="store_true",
        help="Compare with the committed file instead of writing it.",
    )
    parser.add_argument(
        "--out", type=Path, default=OUT, help="Where to write (default: the bundled file)."
    )
    args = parser.parse_args(argv)
    text = generate()
    if args.check:
        same = args.out.is_file() and args.out.read_text(encoding="utf-8") == text
        print(f"{args.out}: {'matches' if same else 'DIFFERS from'} the generator output")
        return 0 if same else 1
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    print(f"wrote {args.out} ({ROWS} rows, seed {SEED})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
