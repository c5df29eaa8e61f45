"""Child process of the scale benchmark: one publish through ``pipeline.run_dataset``
(no Prefect), each stage timed through its public ``wrap`` hook.

``run_dataset`` calls ``wrap(name, stage)`` for every stage it runs (check-ready,
extract, validate, protect, publish: the plain functions of ``civicflow.pipeline``);
the wrapper adds up each name's seconds, so the stages are timed exactly as a run calls
them whatever their number. The project, var/ and portal come from the environment
(``CIVICFLOW_PROJECT_DIR``, ``CIVICFLOW_VAR_DIR``, ``CIVICFLOW_PORTAL_URL``).
Prints one JSON line: timings, total, the time between stages, outcome, the import
time and this process's peak RSS.

Run: ``python benchmarks/scale_stages.py DATASET SOURCE``.
"""

from __future__ import annotations

import json
import logging
import resource
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any


def main() -> None:
    dataset, source = sys.argv[1], Path(sys.argv[2])
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    started = time.perf_counter()
    from civicflow import pipeline
    from civicflow.settings import load_settings

    imported = time.perf_counter() - started
    settings = load_settings()
    timings: dict[str, float] = {}
    calls: Counter[str] = Counter()

    def wrap(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def run(*args: Any, **kwargs: Any) -> Any:
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                timings[name] = timings.get(name, 0.0) + time.perf_counter() - t
                calls[name] += 1

        return run

    t0 = time.perf_counter()
    outcome = pipeline.run_dataset(settings, dataset, source, wrap=wrap)
    total = time.perf_counter() - t0
    print(
        json.dumps(
            {
                "outcome": outcome.outcome,
                "reason": outcome.reason[:300],
                "timings_s": {k: round(v, 3) for k, v in timings.items()},
                "calls": dict(calls),
                "total_s": round(total, 3),
                "between_s": round(total - sum(timings.values()), 3),
                "import_s": round(imported, 3),
                "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                # the check worker, waited for when the run ends (the largest, if several)
                "worker_peak_rss_mib": round(
                    resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1
                ),
            }
        )
    )


if __name__ == "__main__":
    main()
