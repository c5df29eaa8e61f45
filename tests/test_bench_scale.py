"""The scale benchmark's pure parts (benchmarks/scale_data.py, scale_report.py) on tiny
inputs: the 1 %-change generator, target judging and the results table. No timings."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import scale_data  # noqa: E402
import scale_report  # noqa: E402

FMT = "%m/%d/%Y %I:%M:%S %p"


def _source(path: Path, rows: int) -> Path:
    """A small 311-shaped file: every fifth row without UpdatedDate."""
    with path.open("w", newline="", encoding="utf-8") as out:
        w = csv.writer(out, quoting=csv.QUOTE_ALL)
        w.writerow(["SRNumber", "CreatedDate", "UpdatedDate", "RequestType", "CD"])
        for n in range(rows):
            created = f"03/{n % 28 + 1:02d}/2017 {n % 12 + 1:02d}:15:00 {'AM' if n % 2 else 'PM'}"
            updated = "" if n % 5 == 0 else f"04/{n % 28 + 1:02d}/2017 11:59:59 PM"
            kind = ["Bulky Items", "Graffiti Removal", "Illegal Dumping Pickup"][n % 3]
            w.writerow([f"1-{1000 + n}", created, updated, kind, "" if n % 7 == 0 else n % 15 + 1])
    return path


def _rows(path: Path) -> list[list[str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.reader(f))


def _change(src: Path, out: Path, seed: int, share: float = 0.01) -> int:
    return scale_data.changed_copy(
        src,
        out,
        column="UpdatedDate",
        fallback="CreatedDate",
        formats=[FMT],
        seed=seed,
        share=share,
    )


@pytest.mark.parametrize("rows", [1, 99, 1_000, 2_345])
def test_changed_copy_changes_exactly_one_percent_of_the_rows(tmp_path: Path, rows: int) -> None:
    src = _source(tmp_path / "src.csv", rows)
    n = _change(src, tmp_path / "changed.csv", seed=7)
    before, after = _rows(src), _rows(tmp_path / "changed.csv")
    assert n == max(1, round(rows / 100))
    assert after[0] == before[0] and len(after) == len(before)
    differing = [i for i, (a, b) in enumerate(zip(before, after, strict=True)) if a != b]
    assert len(differing) == n
    for i in differing:
        a, b = before[i], after[i]
        assert a[:2] == b[:2] and a[3:] == b[3:]  # key, creation and the rest unchanged
        assert b[2] and b[2] != a[2]
        start = scale_data.datetime.strptime(a[2] or a[1], FMT)
        assert scale_data.datetime.strptime(b[2], FMT) - start == scale_data.STEP


def test_changed_copy_is_deterministic_per_seed_and_keeps_other_bytes(tmp_path: Path) -> None:
    src = _source(tmp_path / "src.csv", 1_000)
    _change(src, tmp_path / "a.csv", seed=3)
    _change(src, tmp_path / "b.csv", seed=3)
    _change(src, tmp_path / "c.csv", seed=4)
    a, b, c = (tmp_path / f"{x}.csv" for x in "abc")
    assert a.read_bytes() == b.read_bytes()
    assert a.read_bytes() != c.read_bytes()
    lines_src = src.read_text(encoding="utf-8").splitlines()
    lines_a = a.read_text(encoding="utf-8").splitlines()
    assert sum(x != y for x, y in zip(lines_src, lines_a, strict=True)) == 10
    assert not list(tmp_path.glob(".*.tmp"))


def test_changed_rows_across_batches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Rows chosen in every Arrow batch, not only the first, are changed."""
    monkeypatch.setattr(scale_data, "BLOCK_BYTES", 4096)
    src = _source(tmp_path / "src.csv", 3_000)
    n = _change(src, tmp_path / "out.csv", seed=1, share=0.05)
    before, after = _rows(src), _rows(tmp_path / "out.csv")
    assert n == 150
    assert sum(a != b for a, b in zip(before, after, strict=True)) == 150
    chosen = scale_data.changed_rows(3_000, 0.05, 1)
    assert [
        i for i, (a, b) in enumerate(zip(before[1:], after[1:], strict=True)) if a != b
    ] == list(chosen)


def test_changed_copy_refuses_unreadable_values(tmp_path: Path) -> None:
    src = tmp_path / "bad.csv"
    src.write_text("SRNumber,CreatedDate,UpdatedDate\n1-1,yesterday,\n", encoding="utf-8")
    with pytest.raises(ValueError, match="formats"):
        _change(src, tmp_path / "out.csv", seed=0)
    assert not (tmp_path / "out.csv").exists()


def test_filter_pairs_most_common_first(tmp_path: Path) -> None:
    src = _source(tmp_path / "src.csv", 600)
    pairs = scale_data.filter_pairs(src, "RequestType", "CD", top=5)
    assert len(pairs) == 5
    counts = [c for _, _, c in pairs]
    assert counts == sorted(counts, reverse=True)
    rows = _rows(src)[1:]
    for kind, district, count in pairs:
        assert count == sum(1 for r in rows if r[3] == kind and r[4] == str(district))


def test_percentiles_nearest_rank() -> None:
    values = [i / 1000 for i in range(1, 101)]  # 1 ms .. 100 ms
    s = scale_report.latency_summary(values, errors=2)
    assert (s["p50_ms"], s["p95_ms"], s["p99_ms"], s["max_ms"]) == (50.0, 95.0, 99.0, 100.0)
    assert s["requests"] == 102 and s["errors"] == 2
    assert scale_report.percentile([], 50) is None
    assert scale_report.percentile([0.3], 99) == 0.3


def _size(rows: int, **over: object) -> dict:
    size = {
        "rows": rows,
        "publish": {"wall_s": 18.0},
        "stages": {
            "timings_s": {"extract": 2.0, "publish": 9.0},
            "between_s": 0.1,
            "total_s": 11.1,
        },
        "incremental": {"wall_s": 1.5, "share_of_full_pct": 8.3},
        "scorecard": {"flow_s": 3.5},
        "rss": {"pipeline_mib": 590.0, "portal_mib": 640.0},
        "load": {"json": {"p50_ms": 20.0, "p95_ms": 150.0, "p99_ms": 300.0}, "csv": {}},
        "errors": [],
    }
    size.update(over)
    return size


def test_targets_judged_at_their_sizes() -> None:
    sizes = {
        "1000000": _size(1_000_000, plain={"wall_s": 90.0}, speedup_vs_plain=5.0),
        "5000000": _size(5_000_000, publish={"wall_s": 95.0}),
    }
    targets = scale_report.judge(sizes)
    by = {(t["key"], t["rows"]): t for t in targets}
    assert by[("publish_1m", 1_000_000)]["met"] is True
    assert ("publish_1m", 5_000_000) not in by  # judged at 1M only
    assert by[("scorecard_5m", 5_000_000)]["met"] is False  # 3.5 s > 3 s
    assert ("scorecard_5m", 1_000_000) not in by
    assert by[("speedup_vs_plain", 1_000_000)]["met"] is True
    assert by[("speedup_vs_plain", 5_000_000)]["met"] is None  # no plain run at 5M
    assert by[("pipeline_rss", 5_000_000)]["met"] is True
    assert by[("portal_rss", 1_000_000)]["met"] is False
    assert by[("incremental_share", 1_000_000)]["met"] is True
    assert by[("portal_p95", 5_000_000)]["met"] is True
    assert {t["target"] for t in targets if t["key"] == "publish_1m"} == {"<= 20 s"}


def test_targets_not_measured_in_a_quick_run() -> None:
    targets = scale_report.judge({"100000": _size(100_000)})
    by = {(t["key"], t["rows"]): t for t in targets}
    assert by[("publish_1m", 1_000_000)]["met"] is None
    assert "not measured" in by[("publish_1m", 1_000_000)]["note"]
    assert by[("scorecard_5m", 5_000_000)]["met"] is None
    assert by[("portal_p95", 100_000)]["met"] is True
    assert scale_report.summary_line(targets).startswith("targets met: ")


def test_met_edges() -> None:
    assert scale_report.met(20.0, "<=", 20) is True
    assert scale_report.met(20.01, "<=", 20) is False
    assert scale_report.met(4.0, ">=", 4) is True
    assert scale_report.met(None, "<=", 1) is None
    assert scale_report.met(float("nan"), "<=", 1) is None
    with pytest.raises(ValueError):
        scale_report.met(1.0, "<", 2)


def test_table_rows_and_format() -> None:
    sizes = {"1000000": _size(1_000_000, plain={"wall_s": 90.0}, speedup_vs_plain=5.0)}
    targets = scale_report.judge(sizes)
    rows = scale_report.table_rows(sizes, targets)
    by = {r["metric"]: r for r in rows}
    publish = by["1M: full publish end to end (civicflow publish)"]
    assert publish == {
        "metric": publish["metric"],
        "value": "18 s",
        "target": "<= 20 s",
        "met": "yes",
    }
    assert by["1M:   stage extract (run_dataset)"]["value"] == "2 s"
    assert by["1M: peak RSS portal (Datasette process)"]["met"] == "NO"
    assert by["1M: speed-up vs the plain script"]["value"] == "5.00x"
    assert by["1M: scorecard flow time"]["target"] == ""  # judged at 5M only
    assert by["1M: portal filtered CSV export p95"]["value"] == "—"  # not measured
    text = scale_report.format_table(rows)
    lines = text.splitlines()
    assert lines[0].split() == ["metric", "value", "target", "met?"]
    assert len(lines) == len(rows) + 2
    assert any(line.endswith("NO") for line in lines)


def test_labels() -> None:
    assert [scale_report.label(n) for n in (1_000_000, 5_000_000, 100_000, 20_000, 2_500)] == [
        "1M",
        "5M",
        "100k",
        "20k",
        "2,500",
    ]
