"""The scorecard's outputs: SVG charts, the page, scorecard.json/csv and performance_metrics.csv."""

from __future__ import annotations

import csv
import json
import re
import xml.etree.ElementTree as ET
from datetime import date
from pathlib import Path

import pytest

from civicflow.metrics import scorecard as sc
from civicflow.metrics.charts import (
    CHAR_WIDTH,
    Bar,
    LinePoint,
    bar_chart,
    fmt,
    line_chart,
    nice_ticks,
)
from civicflow.metrics.compute import small_count_threshold
from civicflow.metrics.i18n import Tr
from civicflow.settings import Settings
from tests.test_metrics_kpis import SOURCES, publish_parquet

PROJECT = Path(__file__).resolve().parents[1]
SVG = "{http://www.w3.org/2000/svg}"


def test_charts_are_wellformed_svg_with_title_desc_and_escaped_labels() -> None:
    line = line_chart(
        "t1",
        "Trend <of> things",
        [LinePoint("2017-12-27", 1.5), LinePoint("2017-12-28", None), LinePoint("2017-12-29", 3.0)],
        "days",
        1,
        target=2.0,
    )
    bars = bar_chart(
        "b1",
        "By group",
        [Bar("A & B <script>", 4.0), Bar("C", None, "suppressed"), Bar("D", 1.0)],
        "days",
        1,
        target=2.0,
        lower_is_better=True,
    )
    for svg in (line, bars):
        root = ET.fromstring(svg)
        assert root.tag == f"{SVG}svg" and root.get("role") == "img"
        assert root.find(f"{SVG}title") is not None and root.find(f"{SVG}desc") is not None
    assert "<script>" not in bars and "A &amp; B &lt;script&gt;" in bars
    # the gap at the missing period splits the line: no polyline spans it
    assert line.count("<polyline") == 0 and line.count("<circle") == 2
    root = ET.fromstring(bars)
    rects = root.findall(f"{SVG}rect")
    assert [r.get("fill") for r in rects] == [
        "#b4480c",
        "#1d5fa8",
    ]  # 4.0 misses a lower-is-better target of 2.0; 1.0 meets it
    assert "suppressed" in bars
    assert "1 of 2 miss the target" in root.find(f"{SVG}desc").text


def test_chart_text_in_spanish() -> None:
    es = Tr("es")
    line = line_chart(
        "t1",
        "Evolución",
        [LinePoint("27 dic 2017", 1234.5), LinePoint("28 dic 2017", 3.25)],
        "días",
        1,
        target=2.0,
        tr=es,
    )
    desc = ET.fromstring(line).find(f"{SVG}desc").text
    assert desc == "2 de 2 períodos tienen valor; último 3,2 días; intervalo de 3,2 a 1.234,5 días"
    assert ">meta 2,0</text>" in line and ">1,5\u00a0mil</text>" in line
    bars = bar_chart(
        "b1", "Por grupo", [Bar("A", 4.0), Bar("B", None)], "días", 1, 2.0, True, tr=es
    )
    desc = ET.fromstring(bars).find(f"{SVG}desc").text
    assert desc == "Grupos: 2; de 4,0 a 4,0 días; 1 de 1 no alcanzan la meta de 2,0 días"
    assert ">sin datos</text>" in bars
    # English keeps its forms
    assert fmt(1234.5, 1) == "1,234.5" and fmt(1234.5, 1, "es") == "1.234,5"


@pytest.mark.parametrize("lang", ["en", "es"])
@pytest.mark.parametrize("periods", [1, 2, 5, 7, 31, 98])
def test_period_labels_on_the_axis_never_collide(lang: str, periods: int) -> None:
    tr = Tr(lang)
    months = [date(2006 + m // 12, m % 12 + 1, 1) for m in range(periods)]
    points = [LinePoint(tr.period(d, "month"), 1.0, tr.axis(d, "month")) for d in months]
    root = ET.fromstring(line_chart("m", "Months", points, "x", 0, tr=tr))
    axis = [t for t in root.findall(f"{SVG}text") if t.get("y") == "198"]  # below the plot
    assert axis[0].text == points[0].short and axis[-1].text == points[-1].short
    assert len(axis) <= 5
    spans = []
    for t in axis:
        x, width = float(t.get("x")), len(t.text) * CHAR_WIDTH
        start = {"start": x, "middle": x - width / 2, "end": x - width}[t.get("text-anchor")]
        spans.append((start, start + width))
    assert all(a[1] < b[0] for a, b in zip(spans, spans[1:], strict=False)), spans


@pytest.mark.parametrize(
    ("lo", "hi"), [(0, 8.6), (0, 100), (0, 5_785_094), (0, 0.3), (-3, 7), (2, 2)]
)
def test_nice_ticks_cover_the_range(lo: float, hi: float) -> None:
    ticks = nice_ticks(lo, hi)
    assert ticks[0] <= lo and ticks[-1] >= hi and len(ticks) <= 8
    steps = {round(b - a, 9) for a, b in zip(ticks, ticks[1:], strict=False)}
    assert len(steps) == 1


def write_bundled_site(
    var_dir: Path,
) -> tuple[Settings, sc.Loaded, sc.Scorecard, dict[str, Path]]:
    """The scorecard site over the bundled datasets' Parquet copies in ``var_dir``."""
    settings = Settings(project_dir=PROJECT, var_dir=var_dir)
    for dataset_id in SOURCES:
        publish_parquet(settings, dataset_id)
    loaded = sc.load(settings)
    results = sc.compute_kpis(settings, loaded)
    sc.write_performance_csv(settings, results, small_count_threshold(loaded.catalog))
    card = sc.build(settings, loaded, results)
    return settings, loaded, card, sc.write_site(settings, card)


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> tuple[Settings, sc.Scorecard, dict[str, Path]]:
    settings, _, card, paths = write_bundled_site(tmp_path_factory.mktemp("site") / "var")
    return settings, card, paths


@pytest.mark.parametrize("page", ["html", "html_es"])
def test_site_files_and_page_content(written, page: str) -> None:
    settings, card, paths = written
    assert {p.name for p in paths.values()} == {
        "scorecard.json",
        "scorecard.csv",
        "index.html",
        "index.es.html",
    }
    html = paths[page].read_text()
    # no resource from any other host: every src/href is relative, a fragment or the portal on this host
    for ref in re.findall(r'(?:src|href)="([^"]*)"', html):
        assert not re.match(r"^[a-z]+://", ref) and not ref.startswith("//"), ref
    assert "<script" not in html
    assert f'data-level="{card.certification.level}"' in html
    for r in card.results:
        assert f'data-kpi="{r.kpi.id}"' in html
        if r.source is not None:
            assert f'href="/portal/{r.kpi.dataset}"' in html
    # one figure per trend and per breakdown, each with its table
    expected = sum(1 + len(r.breakdowns) for r in card.results if r.series)
    assert html.count('<figure class="chart"') == expected
    assert re.findall(r'<figure class="chart".*?</figure>', html, flags=re.S) and all(
        "<svg" in f and "<table>" in f
        for f in re.findall(r'<figure class="chart".*?</figure>', html, flags=re.S)
    )
    # every SVG is well-formed with its text alternative, in the page's language
    for svg in re.findall(r"<svg.*?</svg>", html, flags=re.S):
        root = ET.fromstring(svg)
        assert root.get("role") == "img" and root.find(f"{SVG}title") is not None


def test_scorecard_json_and_csv_agree_with_the_results(written) -> None:
    _, card, paths = written
    data = json.loads(paths["json"].read_text())
    assert data["certification"]["level"] == card.certification.level
    assert [k["id"] for k in data["kpis"]] == [r.kpi.id for r in card.results]
    rows = list(csv.DictReader(paths["csv"].read_text().splitlines()))
    assert [r["kpi_id"] for r in rows] == [r.kpi.id for r in card.results]
    for row, r in zip(rows, card.results, strict=True):
        assert row["status"] == r.status
        if r.current is not None and r.has_value:
            assert float(row["value"]) == pytest.approx(r.current.value, rel=1e-6)
        assert row["data_url"] == (f"/portal/{r.kpi.dataset}" if r.source else "")


def test_performance_csv_is_what_the_dataset_spec_reads(written) -> None:
    settings, card, _ = written
    from civicflow.sources import resolve_source_path
    from civicflow.spec import find_dataset

    spec = find_dataset(settings.datasets_dir, "performance_metrics")
    path = resolve_source_path(spec, settings)
    assert path == sc.performance_csv_path(settings) and path.is_file()
    header = next(csv.reader(path.read_text().splitlines()))
    assert header == [f.name for f in spec.fields]


def test_performance_csv_is_staged_privately_and_only_a_published_version_goes_public(
    written,
) -> None:
    settings, card, paths = written
    staged = sc.performance_csv_path(settings)
    public = sc.public_performance_csv_path(settings)
    site = sc.site_dir(settings)
    assert staged.is_file() and site not in staged.parents
    # written before validation: nothing in the public folder yet, and the page offers nothing
    assert not public.exists() and not card.has_performance_csv
    assert 'href="performance_metrics.csv"' not in paths["html"].read_text()
    assert sc.export_performance_csv(settings) is None and not public.exists()

    # once published (validated, scanned), the published version is exported next to the page
    manifest = publish_parquet(settings, "performance_metrics")
    assert sc.export_performance_csv(settings) == public
    good = public.read_text()
    rows = list(csv.DictReader(good.splitlines()))
    assert len(rows) == manifest.rows > 0
    assert list(rows[0]) == manifest.columns

    # a staged file that fails validation is rejected and never reaches the public folder
    from civicflow.pipeline import run_dataset

    text = staged.read_text().splitlines()
    bad_row = text[1].split(",", 1)
    staged.write_text("\n".join([text[0], "Maria Lopez," + bad_row[1], *text[2:]]) + "\n")
    outcome = run_dataset(settings, "performance_metrics")
    assert outcome.outcome == "rejected", outcome.reason
    assert sc.export_performance_csv(settings) == public
    assert public.read_text() == good and "Maria" not in good
    loaded = sc.load(settings)
    html = sc.write_site(settings, sc.build(settings, loaded, card.results))["html"].read_text()
    assert 'href="performance_metrics.csv"' in html
