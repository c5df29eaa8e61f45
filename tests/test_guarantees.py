"""The main job as a user runs it, then its promises checked from outside (issue 8, "done when").

`make run SERVE=0` publishes every bundled dataset
into a fresh var/; a steward's bad file is then rejected and the scorecard rebuilt. The
checks read what residents and leadership read — the portal over HTTP, the scorecard
files — with oracles of their own, not civicflow's detectors:

- no published address carries an exact house number, and no coordinate is finer than
  its field's declared precision;
- no public page or file holds a value from the rejected run (which the private report
  does hold, so the check is not vacuous);
- the publisher's own token cannot write into a live table.
"""

from __future__ import annotations

import csv
import io
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from civicflow.ledger import Ledger
from civicflow.spec import load_all
from civicflow.spec.models import DatasetSpec
from tests.fixtures.portal import DatasetteServer, free_port

pytestmark = pytest.mark.slow

PROJECT = Path(__file__).resolve().parents[1]
CLI = Path(sys.executable).with_name("civicflow")
LA311 = "la311_service_requests"
LA311_CSV = PROJECT / "data" / LA311 / "MyLA311_Service_Request_Data_2017_Subset.csv"
#: a value no bundled file holds: planted in the rejected file, searched for everywhere
CANARY = "1-QX7CANARY93"


@dataclass
class Job:
    var_dir: Path
    env: dict[str, str]
    portal: DatasetteServer
    specs: dict[str, DatasetSpec]
    run_output: str


def _cli(args: list[str], env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(CLI), *args],
        env=env,
        cwd=PROJECT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _canary_file(path: Path) -> Path:
    """The bundled 311 file with rows 5 and 6 sharing one planted SR number."""
    rows = list(csv.reader(LA311_CSV.open(encoding="utf-8", newline="")))
    column = rows[0].index("SRNumber")
    rows[5][column] = rows[6][column] = CANARY
    with path.open("w", encoding="utf-8", newline="") as out:
        csv.writer(out).writerows(rows)
    return path


@pytest.fixture(scope="module")
def job(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Job]:
    root = tmp_path_factory.mktemp("job")
    var_dir = root / "var"
    port = free_port()
    env = {
        **os.environ,
        "CIVICFLOW_PROJECT_DIR": str(PROJECT),
        "CIVICFLOW_VAR_DIR": str(var_dir),
        "CIVICFLOW_PORTAL_URL": f"http://127.0.0.1:{port}",
        "PREFECT_HOME": str(root / "prefect"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "CI": "true",
    }
    for name in ("CIVICFLOW_HASH_KEY", "DATASETTE_SECRET", "CIVICFLOW_DATASETTE_TOKEN"):
        env.pop(name, None)
    # Exactly what a user runs: the Makefile also starts (and stops) the PostgreSQL
    # example database, without which the case-status dataset is skipped.
    run = subprocess.run(
        ["make", "-s", "run", "SERVE=0", f"PORT={port}"],
        env=env,
        cwd=PROJECT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "skipping" not in run.stdout, run.stdout
    # The job left nothing running; serve the same var/ again to look at it.
    portal = DatasetteServer(var_dir=var_dir, port=port).start()
    env["CIVICFLOW_HASH_KEY"] = (var_dir / "secrets" / "hash_key").read_text().strip()
    env["DATASETTE_SECRET"] = portal.secrets.secret
    try:
        rejected = _cli(["publish", LA311, "--source", str(_canary_file(root / "bad.csv"))], env)
        assert rejected.returncode == 1, rejected.stdout + rejected.stderr
        card = _cli(["scorecard"], env)
        assert card.returncode == 0, card.stdout + card.stderr
        yield Job(var_dir, env, portal, load_all(PROJECT / "datasets"), run.stdout)
    finally:
        portal.stop()


def _published_csv(job: Job, table: str) -> list[dict[str, str]]:
    """Every row of ``table`` as a resident downloads it (streamed CSV, all pages)."""
    response = httpx.get(
        f"{job.portal.url}/portal/{table}.csv", params={"_stream": "on"}, timeout=120
    )
    response.raise_for_status()
    return list(csv.DictReader(io.StringIO(response.text)))


def _exact_house_number(address: str) -> bool:
    """Our own oracle: the street number before the street name is not a multiple of 100.

    Covers glued directions (2209E), fractions (1808-1/2), ranges (100-110) and A/F
    prefixes; a hundred block (2200E, 100-100, 0) passes, and so do numbered streets
    (168TH ST AT VERMONT AVE) and intersections written with a slash (57/SAN PEDRO).
    """
    head = address.strip().split(" ", 1)[0].upper().removeprefix("A/F").removeprefix("AF")
    if re.fullmatch(r"\d+(?:ST|ND|RD|TH)", head) or re.match(r"^\d+(?:ST|ND|RD|TH)?/[A-Z]", head):
        return False
    head = re.sub(r"(?:-|^)\d/\d$", "", head)  # a fraction qualifies a number, it is not one
    numbers = re.findall(r"\d+", head) if re.match(r"^\d", head) else []
    return any(int(n) % 100 for n in numbers)


def test_the_job_published_every_dataset(job: Job) -> None:
    for spec in job.specs.values():
        assert job.portal.row_count(spec.table) > 0, spec.id


def test_the_oracle_knows_an_exact_house_number() -> None:
    exact = ["2209E MICHIGAN AVE", "1808-1/2 W 7TH ST", "100-110 N MAIN ST", "AF4421 VIA MARINA"]
    blocks = ["2200E MICHIGAN AVE", "1800 W 7TH ST", "100-100 N MAIN ST", "0 VIA MARINA"]
    streets = ["168TH ST AT VERMONT AVE, 90247", "57/SAN PEDRO", "61ST/WALL"]
    assert [_exact_house_number(a) for a in exact] == [True] * len(exact)
    assert [_exact_house_number(a) for a in blocks + streets] == [False] * 7


def test_no_published_address_has_an_exact_house_number(job: Job) -> None:
    checked = 0
    for spec in job.specs.values():
        allowed = {
            f.name
            for f in spec.published_fields()
            if any(a.detector == "street_address" for a in f.pii_allow)
        }
        columns = [
            f.name
            for f in spec.published_fields()
            if f.semantic == "address" and f.name not in allowed
        ]
        if not columns:
            continue
        rows = _published_csv(job, spec.table)
        for column in columns:
            values = [r[column] for r in rows if r[column]]
            if values and all(v.strip().isdigit() for v in values):
                pytest.fail(f"{spec.id}.{column}: a bare house-number column is published")
            exact = [v for v in values if _exact_house_number(v)]
            assert exact == [], f"{spec.id}.{column}: {len(exact)} exact house numbers"
            checked += len(values)
    assert checked > 20_000  # 311, parking and code enforcement addresses were all read


def test_no_published_coordinate_is_finer_than_its_declared_precision(job: Job) -> None:
    for spec in job.specs.values():
        fields = [
            f
            for f in spec.published_fields()
            if f.semantic in ("latitude", "longitude") and f.precision is not None
        ]
        if not fields:
            continue
        rows = _published_csv(job, spec.table)
        for f in fields:
            decimals = [len(v.split(".", 1)[1]) for v in (r[f.name] for r in rows) if "." in v]
            assert decimals and max(decimals) <= f.precision, f"{spec.id}.{f.name}"


def _public_texts(job: Job) -> dict[str, str]:
    """What leadership and residents can read: the scorecard site and the portal's pages."""
    texts = {
        str(p.relative_to(job.var_dir)): p.read_text(encoding="utf-8", errors="replace")
        for p in (job.var_dir / "site").rglob("*")
        if p.is_file()
    }
    for path in ("/", "/portal", f"/portal/{LA311}", "/scorecard/", "/scorecard/scorecard.json"):
        response = httpx.get(job.portal.url + path, timeout=30, follow_redirects=True)
        response.raise_for_status()
        texts[path] = response.text
    return texts


def test_no_public_page_or_file_holds_a_value_from_the_rejected_run(job: Job) -> None:
    last = Ledger(job.var_dir / "ledger.db").last(LA311)
    assert last is not None and last.outcome == "rejected"
    assert last.report_path is not None and CANARY in Path(last.report_path).read_text()
    assert CANARY not in last.reason
    texts = _public_texts(job)
    assert any("scorecard.json" in name for name in texts)
    assert [name for name, text in texts.items() if CANARY in text] == []


def test_the_publishers_token_cannot_insert_into_a_live_table(job: Job) -> None:
    token = job.portal.token_for(LA311)
    before = job.portal.row_count(LA311)
    response = httpx.post(
        f"{job.portal.url}/portal/{LA311}/-/insert",
        json={"row": {"sr_number": "1-FORGED"}},
        headers={"authorization": f"Bearer {token}"},
        timeout=30,
    )
    assert response.status_code == 403, response.text
    assert job.portal.row_count(LA311) == before
