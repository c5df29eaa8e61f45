"""Run reports for people: the private HTML page and the public Prefect artifacts.

A real rejected run (the bundled LA311 file with planted cells) writes the JSON report;
the page must show the planted values (escaped), the artifacts must not.
"""

from __future__ import annotations

import json
import stat
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest
from prefect import flow
from prefect.client.orchestration import get_client

from civicflow.pipeline import run_dataset
from civicflow.quality.html import PRIVATE_BANNER, write_report_html
from civicflow.settings import Settings
from flows.artifacts import artifact_key, publish_validation_artifact

PROJECT = Path(__file__).resolve().parents[1]
LA311 = "la311_service_requests"
CSV = PROJECT / "data" / LA311 / "MyLA311_Service_Request_Data_2017_Subset.csv"
CANARY = "CANARY-7f3c9e-QWXZ"  # found nowhere in the bundled data
SCRIPT = "<script>alert(1)</script>"


def rejected_report(settings: Settings, tmp_path: Path) -> Path:
    """A real rejected run whose failing cells hold the canary and markup."""
    frame = pd.read_csv(CSV, dtype=str, keep_default_na=False)
    frame.loc[[9, 19], "Status"] = CANARY  # rows 10, 20: GX value set (critical)
    frame.loc[29, "Status"] = SCRIPT  # row 30: same check, markup in the value
    frame.loc[99, "CD"] = f"{CANARY}-cd"  # row 100: type error
    path = tmp_path / "planted.csv"
    frame.to_csv(path, index=False)
    outcome = run_dataset(settings, LA311, path)
    assert outcome.outcome == "rejected", outcome.reason
    assert outcome.report_path is not None
    return Path(outcome.report_path)


class _Page(HTMLParser):
    """Collects what the accessibility checks below look at."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.th_scopes: list[str | None] = []
        self.text: list[str] = []
        self.srcs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        found = dict(attrs)
        if tag == "th":
            self.th_scopes.append(found.get("scope"))
        self.srcs += [v or "" for k, v in attrs if k in ("src", "href")]

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def test_html_report_is_private_escaped_and_lists_every_check(project, tmp_path) -> None:
    json_path = rejected_report(project, tmp_path)
    html_path = write_report_html(json_path)
    assert html_path == json_path.with_suffix(".html")
    assert stat.S_IMODE(html_path.stat().st_mode) == 0o600
    page = html_path.read_text(encoding="utf-8")
    assert CANARY in page and f"{CANARY}-cd" in page  # the values are the point of the page
    assert SCRIPT not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    parsed = _Page()
    parsed.feed(page)
    text = "".join(parsed.text)
    assert PRIVATE_BANNER in text and SCRIPT in text  # shown as text, not run as a script
    assert "script" not in parsed.tags and parsed.tags.count("h1") == 1
    assert parsed.th_scopes and all(s in ("col", "row") for s in parsed.th_scopes)
    assert parsed.srcs == []  # self-contained: no external asset, no link
    report = json.loads(json_path.read_text(encoding="utf-8"))
    assert report["checks"]
    for check in report["checks"]:
        assert check["name"] in text and check["message"] in text
    assert "rejected" in text and LA311 in text and report["run_id"] in text


def test_html_for_a_stopped_run_shows_its_private_detail(tmp_path) -> None:
    json_path = tmp_path / "r1.json"
    body = {
        "dataset_id": "x",
        "run_id": "r1",
        "passed": False,
        "stage": "extract",
        "error": "sheet Data, cell B7: not a date",
        "detail": f"cell held {SCRIPT}",
    }
    json_path.write_text(json.dumps(body))
    page = write_report_html(json_path).read_text(encoding="utf-8")
    assert "stopped at extract" in page and "cell B7: not a date" in page
    assert "cell held &lt;script&gt;" in page and SCRIPT not in page
    assert "No privacy report" in page


def _artifact_text(artifacts: list) -> str:
    return "\n".join(
        json.dumps([a.key, a.type, a.description, a.data, a.metadata_], default=str)
        for a in artifacts
    )


def test_artifacts_hold_checks_but_no_source_value(prefect_harness, project, tmp_path) -> None:
    json_path = rejected_report(project, tmp_path)
    write_report_html(json_path)

    @flow(name="artifact-test")
    def publish_it() -> None:
        publish_validation_artifact(LA311, json_path)

    state = publish_it(return_state=True)
    key = artifact_key(LA311)
    assert key == "validation-la311-service-requests"
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts()
    # every publish flow of the session's harness makes artifacts under this key: this run's
    ours = [
        a
        for a in artifacts
        if a.key in (key, f"{key}-summary") and a.flow_run_id == state.state_details.flow_run_id
    ]
    assert sorted(a.type for a in ours) == ["markdown", "table"]
    table = next(a for a in ours if a.type == "table")
    rows = json.loads(table.data) if isinstance(table.data, str) else table.data
    report = json.loads(json_path.read_text(encoding="utf-8"))
    assert [r["check"] for r in rows] == [c["name"] for c in report["checks"]]
    assert any(r["outcome"] == "failed" and r["failing"] == 3 for r in rows)
    summary = next(a for a in ours if a.type == "markdown")
    assert "Verdict: rejected" in str(summary.data)
    assert str(json_path.with_suffix(".html")) in str(summary.data)
    public = _artifact_text(artifacts)  # every artifact on the server, not only ours
    assert CANARY not in public and "alert(1)" not in public


@pytest.mark.parametrize("dataset_id", ["Mixed_Case.id", "a--b"])
def test_artifact_keys_are_lowercase_dashes(dataset_id: str) -> None:
    key = artifact_key(dataset_id)
    assert key.startswith("validation-") and all(
        ch.islower() or ch.isdigit() or ch == "-" for ch in key
    )


CHROMIUM = Path("/usr/bin/chromium")


def test_html_report_in_headless_chromium_runs_no_planted_script(project, tmp_path) -> None:
    """The page opens from disk with no script run, no request and no console error."""
    assert CHROMIUM.exists(), "Debian's chromium is needed (see tests/test_scorecard_browser.py)"
    from playwright.sync_api import sync_playwright

    html_path = write_report_html(rejected_report(project, tmp_path))
    url = html_path.as_uri()
    dialogs: list[str] = []
    errors: list[str] = []
    requests: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM), args=["--headless", "--no-sandbox", "--disable-gpu"]
        )
        try:
            page = browser.new_page(viewport={"width": 375, "height": 800})
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("request", lambda r: requests.append(r.url) if r.url != url else None)
            page.goto(url)
            overflow = page.evaluate(
                "document.documentElement.scrollWidth - document.documentElement.clientWidth"
            )
            cells = page.locator("td code").all_inner_texts()
        finally:
            browser.close()
    assert dialogs == [] and errors == [] and requests == []
    assert SCRIPT in cells and CANARY in cells  # the values shown as text
    assert overflow <= 0  # wide tables scroll inside their box at 375 px, not the page


def test_html_shows_the_privacy_report_beside_the_json(tmp_path) -> None:
    from civicflow.privacy.report import Finding, PrivacyReport, RuleApplied

    json_path = tmp_path / "r2.json"
    json_path.write_text(
        json.dumps({"dataset_id": "x", "run_id": "r2", "passed": True, "checks": []})
    )
    privacy = PrivacyReport(dataset_id="x", rows=10, published_columns=["email", "age"])
    privacy.rules.append(RuleApplied("age", "generalise", "ages in bands", 7, 10, "band-10"))
    privacy.findings.append(
        Finding("x", "email", "email", 2, [3, 8], ["j***@<b>x</b>.org", "k***@y.org"])
    )
    privacy.write(tmp_path / "r2.privacy.json")
    page = write_report_html(json_path).read_text(encoding="utf-8")
    parsed = _Page()
    parsed.feed(page)
    text = "".join(parsed.text)
    assert "Privacy scan: blocked." in text
    for shown in ("generalise", "band-10", "ages in bands", "[3, 8]", "j***@<b>x</b>.org"):
        assert shown in text, shown
    assert "b" not in parsed.tags  # the masked example's markup is text, not a tag
