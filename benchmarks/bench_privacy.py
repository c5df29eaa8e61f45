"""Privacy stage throughput: the PII scan and the whole protect() step.

1. Scan of the published parking_citations frame (9,999 real rows, 18 columns), run
   REPEATS times; reports the median and best rows/s (the issue's headline number).
2. protect() (rules + scan) on the same rows, and on the parking rows repeated to
   SCALE_ROWS, to show it stays columnar at city size.
3. protect() on code_enforcement_cases (free-text notes: value redaction + 7 detectors),
   repeated to a larger frame, since free text is the slow case.
4. Precision and recall of the scan on the labelled set tests/privacy_data/labelled.csv
   (the test asserts the thresholds; this prints the numbers).

Run: `.venv/bin/python benchmarks/bench_privacy.py [REPEATS] [SCALE_ROWS]`.
"""

from __future__ import annotations

import resource
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from civicflow.privacy import protect
from civicflow.privacy.evaluate import load_labelled, score
from civicflow.privacy.scan import scan
from civicflow.settings import Settings
from civicflow.sources import extract
from civicflow.spec import find_dataset

PROJECT = Path(__file__).resolve().parents[1]


def repeat(frame: pd.DataFrame, rows: int) -> pd.DataFrame:
    times = -(-rows // len(frame))
    big = pd.concat([frame] * times, ignore_index=True).iloc[:rows]
    big.index = pd.RangeIndex(1, rows + 1, name="row")
    return big


def timed(fn, runs: int) -> list[float]:  # type: ignore[no-untyped-def]
    out = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def report(label: str, rows: int, seconds: list[float]) -> None:
    med, best = statistics.median(seconds), min(seconds)
    print(
        f"{label:<52} {rows:>9,} rows  median {med * 1000:8.1f} ms  {rows / med:>11,.0f} rows/s  (best {rows / best:,.0f} rows/s, {len(seconds)} runs)"
    )


def precision_recall() -> None:
    labelled = load_labelled(PROJECT / "tests" / "privacy_data" / "labelled.csv")
    scores = score(labelled)
    print(f"labelled set: {len(labelled)} texts")
    for name, s in scores.items():
        print(
            f"  {name:<16} precision {s.precision:6.1%}  recall {s.recall:6.1%}"
            f"  (tp {s.true_pos}, fp {s.false_pos}, fn {s.false_neg})"
        )
    tp, fp, fn = (
        sum(getattr(s, k) for s in scores.values()) for k in ("true_pos", "false_pos", "false_neg")
    )
    print(f"  {'all detectors':<16} precision {tp / (tp + fp):6.1%}  recall {tp / (tp + fn):6.1%}")


def main() -> None:
    repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 30
    scale_rows = int(sys.argv[2]) if len(sys.argv) > 2 else 1_000_000
    with tempfile.TemporaryDirectory() as tmp:
        # A throwaway key: the benchmark needs one for the VIN hash rule, never a real one.
        settings = Settings(
            project_dir=PROJECT,
            var_dir=Path(tmp) / "var",
            env={"CIVICFLOW_HASH_KEY": secrets.token_hex(32)},
        )
        parking = find_dataset(settings.datasets_dir, "parking_citations")
        frame = extract(parking, settings, "bench").frame
        published = protect(parking, frame, settings)
        assert not published.report.blocked, published.report.summary()
        pub = published.frame

        scan(parking, pub)  # warm-up: regex compilation, pyarrow kernels
        report(
            "scan, parking_citations (published frame)",
            len(pub),
            timed(lambda: scan(parking, pub), repeats),
        )
        report(
            "protect (rules + scan), parking_citations",
            len(frame),
            timed(lambda: protect(parking, frame, settings), max(5, repeats // 3)),
        )

        big = repeat(frame, scale_rows)
        big_pub = repeat(pub, scale_rows)
        report(
            "scan, parking_citations repeated",
            len(big_pub),
            timed(lambda: scan(parking, big_pub), 3),
        )
        report(
            "protect, parking_citations repeated",
            len(big),
            timed(lambda: protect(parking, big, settings), 3),
        )

        cases = find_dataset(settings.datasets_dir, "code_enforcement_cases")
        cframe = extract(cases, settings, "bench").frame
        report(
            "protect, code_enforcement_cases (free-text notes)",
            len(cframe),
            timed(lambda: protect(cases, cframe, settings), max(5, repeats // 3)),
        )
        cbig = repeat(cframe, scale_rows // 10)
        report(
            "protect, code_enforcement_cases repeated",
            len(cbig),
            timed(lambda: protect(cases, cbig, settings), 3),
        )
    precision_recall()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS {peak:,.0f} MiB")


if __name__ == "__main__":
    main()
