"""Scale benchmark of issue 13 (item 5): a year of 311 and more, end to end, against the
issue's targets. ``make bench`` runs it first; ``make bench ROWS=100000`` is a quick check.

For each size (default 1,000,000 and 5,000,000 rows; ``--rows`` or ``BENCH_ROWS``):

1. the source: ``civicflow bench generate --dataset la311_service_requests --rows N
   --seed S`` into var/bench/ (kept: a rerun with the same rows and seed reuses it),
   and its copy with 1 % of the rows changed (``scale_data.changed_copy``);
2. the stages: a fresh project and var/ with its own portal (``civicflow portal
   serve``), one ``pipeline.run_dataset`` in a child process with each stage timed
   through its ``wrap`` hook (``scale_stages.py``), no Prefect;
3. the product end to end, in another fresh project, var/ and portal: an untimed
   ``civicflow publish neighborhood_councils`` (Prefect's database and the imports
   warm; the scorecard's lookup table), then wall time of ``civicflow publish
   la311_service_requests --source FILE``, of the same with the 1 %-changed file (the
   incremental republish), of ``civicflow scorecard`` (and its own flow time), then
   the portal load test: 20 concurrent clients on 127.0.0.1, a fixed number of
   requests, filtered JSON table queries (by request type and council district,
   values from the data, with their row count) and, every fifth request, the CSV
   export of such a filtered subset;
4. at up to ``--plain-max-rows`` (1,000,000) rows, the plain script a steward would
   write (``scale_plain.py``: pandas, GX, sqlite-utils) on the same file, in the same
   run, and the speed-up of civicflow over it.

Peak RSS: the publish process's own VmHWM (sampled from /proc) and Datasette's VmHWM
over the whole session (publishes, scorecard and load test). CLI calls use one Prefect
server started for the session (state in var/bench/prefect-server), as a city runs one,
or the one ``PREFECT_API_URL`` names; ``--temporary-prefect``: Prefect's temporary server
per call, as from a fresh clone with nothing running (``CIVICFLOW_PROJECT_SERVER=0``;
state in var/bench/prefect).

Prints the machine, one table (metric, value, target, met?) and writes every figure
with the machine and the judged targets to bench/results.json (``--out``). Progress on
a terminal only; the commands' output goes to var/bench/logs/. Exit 1 when a
measurement failed (its error is in the table's notes and the JSON), 0 otherwise,
whether or not the targets are met.

Run: ``.venv/bin/python benchmarks/bench_scale.py [--rows "1000000 5000000"] [--seed 0]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import yaml
from scale_data import changed_copy, filter_pairs
from scale_procs import Portal, Progress, free_port, load_test, plan_requests, run_measured
from scale_report import format_table, judge, label, machine, summary_line, table_rows

PROJECT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
DATASET = "la311_service_requests"
WARMUP_DATASET = "neighborhood_councils"
DEFAULT_ROWS = "1000000 5000000"
#: what to filter on in the load test, by spec field name
FILTERS = ("request_type", "cd")
CHANGED_FIELD, FALLBACK_FIELD = "updated_date", "created_date"


class StepFailed(RuntimeError):
    pass


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rows",
        default=os.environ.get("BENCH_ROWS") or DEFAULT_ROWS,
        help=f"sizes, space or comma separated (default BENCH_ROWS or {DEFAULT_ROWS!r})",
    )
    parser.add_argument("--seed", type=int, default=int(os.environ.get("BENCH_SEED") or 0))
    parser.add_argument("--out", type=Path, default=PROJECT / "bench" / "results.json")
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--requests", type=int, default=400, help="load-test requests (timed)")
    parser.add_argument("--csv-every", type=int, default=5, help="every Nth request a CSV export")
    parser.add_argument("--plain-max-rows", type=int, default=1_000_000)
    parser.add_argument("--timeout", type=float, default=7200, help="seconds per command")
    parser.add_argument("--keep", action="store_true", help="keep the run folders in var/bench")
    parser.add_argument(
        "--temporary-prefect",
        action="store_true",
        help="each CLI call starts Prefect's temporary server (as with no server up)",
    )
    args = parser.parse_args()
    args.sizes = sorted({int(r.replace("_", "")) for r in args.rows.replace(",", " ").split()})
    if not args.sizes or min(args.sizes) < 1:
        parser.error("--rows: give at least one positive number of rows")
    return args


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.dir = PROJECT / "var" / "bench"
        self.dir.mkdir(parents=True, exist_ok=True)
        os.chmod(PROJECT / "var", 0o700)
        self.civicflow = str(Path(sys.executable).parent / "civicflow")
        self.spec = yaml.safe_load((PROJECT / "datasets" / f"{DATASET}.yaml").read_text())
        self.fields = {f["name"]: f for f in self.spec["fields"]}
        self.formats = self.spec["source"].get("timestamp_formats") or []
        self.table = (self.spec.get("portal") or {}).get("table") or DATASET
        self.prefect_home = self.dir / "prefect"
        self.external_prefect = os.environ.get("PREFECT_API_URL")

    def source_name(self, field: str) -> str:
        f = self.fields[field]
        return f.get("source") or f["name"]

    # -- environment ------------------------------------------------------------

    def project(self, root: Path, port: int) -> tuple[dict[str, str], Path]:
        """A fresh project copy (specs, suites, metrics; data/ linked) and its env."""
        if root.exists():
            shutil.rmtree(root)
        proj, var = root / "project", root / "var"
        for name in ("datasets", "expectations", "metrics"):
            shutil.copytree(PROJECT / name, proj / name)
        shutil.copy(PROJECT / "pyproject.toml", proj / "pyproject.toml")
        (proj / "data").symlink_to(PROJECT / "data", target_is_directory=True)
        var.mkdir(mode=0o700, parents=True)
        env = dict(os.environ)
        env.update(
            {
                "CIVICFLOW_PROJECT_DIR": str(proj),
                "CIVICFLOW_VAR_DIR": str(var),
                "CIVICFLOW_PORTAL_URL": f"http://127.0.0.1:{port}",
                "PREFECT_HOME": str(self.prefect_home),
                "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                "PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW": "ignore",
                "PREFECT_LOGGING_EXTRA_LOGGERS": "civicflow",
            }
        )
        env.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
        env.pop("CIVICFLOW_PORTAL_DATABASE", None)
        if not self.external_prefect:
            env["CIVICFLOW_PROJECT_SERVER"] = "0"  # never a developer's server on :4200
        return env, proj

    def logs(self, rows: int) -> Path:
        path = self.dir / "logs" / f"{rows}-{self.args.seed}"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def run(self, what: str, command: list[str], env: dict[str, str], log: Path, **kw: Any):
        with Progress(what) as progress:
            result = run_measured(command, env, log, timeout=self.args.timeout, **kw)
            progress.result = f"exit {result['exit']}"
        if result["exit"] != 0:
            tail = "\n".join(result["output"].splitlines()[-12:])
            raise StepFailed(f"{' '.join(command[:3])}… exit {result['exit']} (log {log}):\n{tail}")
        return result

    # -- inputs -----------------------------------------------------------------

    def source(self, rows: int) -> tuple[Path, dict[str, Any]]:
        seed = self.args.seed
        path = self.dir / f"{DATASET}-{rows}-{seed}.csv"
        done = path.with_name(path.name + ".done.json")
        if path.is_file() and done.is_file():
            return path, {**json.loads(done.read_text()), "cached": True}
        tmp = path.with_name(f".{path.name}.tmp")
        env = {**os.environ, "CIVICFLOW_PROJECT_DIR": str(PROJECT)}
        command = [self.civicflow, "bench", "generate", "--dataset", DATASET]
        command += ["--rows", str(rows), "--seed", str(seed), "--out", str(tmp)]
        result = self.run(
            f"{label(rows)}: generate {rows:,} rows", command, env, self.logs(rows) / "generate.log"
        )
        os.replace(tmp, path)
        info = {"path": str(path.relative_to(PROJECT)), "bytes": path.stat().st_size}
        info |= {"rows": rows, "seed": seed, "generate_s": result["wall_s"]}
        info["generate_peak_rss_mib"] = result["peak_rss_mib"]
        done.write_text(json.dumps(info))
        return path, {**info, "cached": False}

    def changed(self, rows: int, source: Path) -> tuple[Path, dict[str, Any]]:
        path = source.with_name(source.stem + "-changed1pct.csv")
        done = path.with_name(path.name + ".done.json")
        if path.is_file() and done.is_file():
            return path, {**json.loads(done.read_text()), "cached": True}
        with Progress(f"{label(rows)}: change 1 % of the rows") as progress:
            started = time.perf_counter()
            n = changed_copy(
                source,
                path,
                column=self.source_name(CHANGED_FIELD),
                fallback=self.source_name(FALLBACK_FIELD),
                formats=self.formats,
                seed=self.args.seed,
            )
            progress.result = f"{n:,} rows"
        info = {"path": str(path.relative_to(PROJECT)), "rows_changed": n}
        info |= {
            "column": self.source_name(CHANGED_FIELD),
            "seconds": time.perf_counter() - started,
        }
        done.write_text(json.dumps(info))
        return path, {**info, "cached": False}

    # -- measurements -----------------------------------------------------------

    def stages(self, rows: int, source: Path, size: dict[str, Any]) -> None:
        port = free_port()
        env, proj = self.project(self.dir / "runs" / f"{rows}-{self.args.seed}" / "stages", port)
        logs = self.logs(rows)
        with Portal(self.civicflow, env, port, logs / "stages-portal.log") as portal:
            portal.wait_up()
            command = [sys.executable, str(HERE / "scale_stages.py"), DATASET, str(source)]
            portal_cpu = portal.cpu_s()
            result = self.run(
                f"{label(rows)}: stages (run_dataset)", command, env, logs / "stages.log", cwd=proj
            )
            portal_cpu = _delta(portal.cpu_s(), portal_cpu)
            size["portal_peaks"].append(portal.peak_rss_mib())
        found = _last_json(result["output"])
        if found.get("outcome") != "published":
            raise StepFailed(f"stages: outcome {found.get('outcome')}: {found.get('reason')}")
        found["wall_s"] = result["wall_s"]
        found["portal_peak_rss_mib"] = size["portal_peaks"][-1]
        # where the CPU went on the machine's cores: what bounds the wall time
        found["cpu_s"] = {
            "publish_process": result["cpu_s"],
            "check_workers": result["workers_cpu_s"],
            "portal": portal_cpu,
        }
        size["stages"] = found

    def product(self, rows: int, source: Path, changed: Path, size: dict[str, Any]) -> None:
        port = free_port()
        env, proj = self.project(self.dir / "runs" / f"{rows}-{self.args.seed}" / "cli", port)
        logs, tag = self.logs(rows), label(rows)
        with Portal(self.civicflow, env, port, logs / "cli-portal.log") as portal:
            portal.wait_up()
            self.run(
                f"{tag}: warm-up (publish {WARMUP_DATASET})",
                [self.civicflow, "publish", WARMUP_DATASET],
                env,
                logs / "warmup.log",
                cwd=proj,
            )
            publish = [self.civicflow, "publish", DATASET, "--source"]
            full = self.run(
                f"{tag}: civicflow publish (full)",
                [*publish, str(source)],
                env,
                logs / "publish.log",
                cwd=proj,
            )
            size["publish"] = _published(full, "publish")
            size["portal_after_publish_mib"] = portal.peak_rss_mib()
            size["portal_peaks"].append(size["portal_after_publish_mib"])
            inc = self.run(
                f"{tag}: civicflow publish (1 % changed)",
                [*publish, str(changed)],
                env,
                logs / "incremental.log",
                cwd=proj,
            )
            size["incremental"] = _published(inc, "incremental")
            size["incremental"]["share_of_full_pct"] = round(
                100 * inc["wall_s"] / full["wall_s"], 1
            )
            size["portal_peaks"].append(portal.peak_rss_mib())
            self.guard(size, "scorecard", lambda: self.scorecard(rows, env, proj, size))
            self.guard(size, "load", lambda: self.load(rows, source, portal, size))
            size["portal_peaks"].append(portal.peak_rss_mib())

    def scorecard(self, rows: int, env: dict[str, str], proj: Path, size: dict[str, Any]) -> None:
        result = self.run(
            f"{label(rows)}: civicflow scorecard",
            [self.civicflow, "scorecard"],
            env,
            self.logs(rows) / "scorecard.log",
            cwd=proj,
        )
        took = [ln for ln in result["output"].splitlines() if ln.startswith("took ")]
        size["scorecard"] = {
            "wall_s": result["wall_s"],
            "flow_s": float(took[-1].split()[1]) if took else None,
            "peak_rss_mib": result["peak_rss_mib"],
            "log": _relative(result["log"]),
        }

    def load(self, rows: int, source: Path, portal: Portal, size: dict[str, Any]) -> None:
        first, second = (self.source_name(f) for f in FILTERS)
        pairs = filter_pairs(source, first, second)
        plan = plan_requests(
            "portal",
            self.table,
            pairs,
            FILTERS,
            requests=self.args.requests + self.args.clients,
            csv_every=self.args.csv_every,
            seed=self.args.seed,
        )
        check = self.check_filter(portal, pairs[-1])
        with Progress(f"{label(rows)}: portal load test") as progress:
            found = load_test(portal.url, plan, clients=self.args.clients, warmup=self.args.clients)
            progress.result = f"{found['requests_per_s']} requests/s"
        found["filters"] = {"columns": list(FILTERS), "pairs": len(pairs), "check": check}
        found["csv_every"] = self.args.csv_every
        size["load"] = found

    def check_filter(self, portal: Portal, pair: tuple[str, int, int]) -> dict[str, Any]:
        """The filters select what the data says: the portal counts the source's rows
        (Datasette stops counting past its count limit and says so)."""
        value, number, expected = pair
        query = [(FILTERS[0], value), (FILTERS[1], number), ("_size", 1)]
        query += [("_extra", "count"), ("_extra", "count_truncated")]
        body = httpx.get(
            f"{portal.url}/portal/{self.table}.json?{urlencode(query)}", timeout=300
        ).json()
        got = body.get("count")
        check = {"filter": [value, number], "source_rows": expected, "portal_count": got}
        check["portal_count_truncated"] = bool(body.get("count_truncated"))
        exact = got == expected
        if not exact and not (
            check["portal_count_truncated"] and got is not None and got < expected
        ):
            raise StepFailed(
                f"load: the portal's filtered count disagrees with the source: {check}"
            )
        return check

    def plain(self, rows: int, source: Path, size: dict[str, Any]) -> None:
        out = self.dir / "runs" / f"{rows}-{self.args.seed}" / "plain" / "plain.db"
        out.parent.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, str(HERE / "scale_plain.py")]
        command += [str(PROJECT / "datasets" / f"{DATASET}.yaml")]
        command += [str(PROJECT / "expectations" / f"{DATASET}.json"), str(source), str(out)]
        result = self.run(
            f"{label(rows)}: plain script (pandas, GX, sqlite-utils)",
            command,
            dict(os.environ),
            self.logs(rows) / "plain.log",
        )
        found = _last_json(result["output"])
        found["self_reported_peak_rss_mib"] = own = found.pop("peak_rss_mib", None)
        peaks = [p for p in (own, result["peak_rss_mib"]) if p is not None]
        found |= {"wall_s": result["wall_s"], "peak_rss_mib": max(peaks) if peaks else None}
        found["log"] = _relative(result["log"])
        size["plain"] = found
        out.unlink(missing_ok=True)

    def guard(self, size: dict[str, Any], step: str, fn: Callable[[], None]) -> None:
        """Run one measurement; a failure is recorded and the others go on."""
        try:
            fn()
        except Exception as exc:  # noqa: BLE001 - recorded in the results, run goes on
            size["errors"].append(f"{step}: {type(exc).__name__}: {exc}")

    def size(self, rows: int) -> dict[str, Any]:
        size: dict[str, Any] = {"rows": rows, "errors": [], "portal_peaks": []}
        try:
            source, size["source"] = self.source(rows)
            changed, size["changed"] = self.changed(rows, source)
        except Exception as exc:  # noqa: BLE001 - nothing to measure without the input
            size["errors"].append(f"input: {type(exc).__name__}: {exc}")
            return size
        self.guard(size, "stages", lambda: self.stages(rows, source, size))
        self.guard(size, "publish", lambda: self.product(rows, source, changed, size))
        if rows <= self.args.plain_max_rows:
            self.guard(size, "plain", lambda: self.plain(rows, source, size))
        peaks = [p for p in size.pop("portal_peaks") if p is not None]
        pipeline = [
            size.get(step, {}).get("pipeline_peak_rss_mib") for step in ("publish", "incremental")
        ]
        pipeline = [p for p in pipeline if p is not None]
        size["rss"] = {
            "pipeline_mib": max(pipeline) if pipeline else None,
            "portal_mib": max(peaks) if peaks else None,
            "portal_after_publish_mib": size.pop("portal_after_publish_mib", None),
        }
        if "plain" in size and "publish" in size:
            size["speedup_vs_plain"] = round(size["plain"]["wall_s"] / size["publish"]["wall_s"], 2)
        if not self.args.keep:
            shutil.rmtree(self.dir / "runs" / f"{rows}-{self.args.seed}", ignore_errors=True)
        return size


def _delta(after: float | None, before: float | None) -> float | None:
    return round(after - before, 1) if after is not None and before is not None else None


def _last_json(output: str) -> dict[str, Any]:
    for line in reversed(output.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise StepFailed("no JSON result line in the output")


def _relative(path: str) -> str:
    try:
        return str(Path(path).relative_to(PROJECT))
    except ValueError:
        return path


def _published(result: dict[str, Any], step: str) -> dict[str, Any]:
    lines = [ln for ln in result["output"].splitlines() if ln.startswith(f"{DATASET}: ")]
    outcome = lines[-1] if lines else ""
    if ": PUBLISHED" not in outcome and ": UNCHANGED" not in outcome:
        raise StepFailed(f"{step}: no published outcome in the output ({outcome or 'none'})")
    return {
        "wall_s": result["wall_s"],
        "outcome": outcome[:300],
        # the publish process and its check workers (each at its own peak)
        "pipeline_peak_rss_mib": result["with_workers_peak_rss_mib"],
        "process_peak_rss_mib": result["peak_rss_mib"],
        "workers_peak_rss_mib": result["workers_peak_rss_mib"],
        "tree_peak_rss_mib": result["tree_peak_rss_mib"],
        "log": _relative(result["log"]),
    }


@contextmanager
def prefect_server(args: argparse.Namespace) -> Iterator[None]:
    """A Prefect server for the session, as a city runs one (``make run`` starts the
    project's): the CLI calls then use it instead of starting Prefect's temporary
    server each (about 13 s each here). Not when ``PREFECT_API_URL`` names one, or with
    ``--temporary-prefect``."""
    if os.environ.get("PREFECT_API_URL") or args.temporary_prefect:
        yield
        return
    sys.path.insert(0, str(PROJECT))
    from flows._server import start_server, stop

    home = PROJECT / "var" / "bench" / "prefect-server"
    home.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    with Progress("Prefect server for the session") as progress:
        proc, api_url = start_server(free_port(), env, home / "server.log")
        progress.result = api_url
    os.environ["PREFECT_API_URL"] = api_url
    try:
        yield
    finally:
        os.environ.pop("PREFECT_API_URL", None)
        stop(proc)


def main() -> None:
    args = parse_args()
    with prefect_server(args):
        run(args)


def run(args: argparse.Namespace) -> None:
    bench = Bench(args)
    results: dict[str, Any] = {
        "benchmark": "benchmarks/bench_scale.py (issue 13, item 5)",
        "machine": machine(PROJECT),
        "config": {
            "dataset": DATASET,
            "rows": args.sizes,
            "seed": args.seed,
            "changed_share": 0.01,
            "load_test": {
                "clients": args.clients,
                "requests": args.requests,
                "warmup_requests": args.clients,
                "csv_every": args.csv_every,
            },
            "plain_max_rows": args.plain_max_rows,
            "prefect": bench.external_prefect or "temporary server per CLI call",
        },
        "sizes": {},
    }
    m = results["machine"]
    print(
        f"machine: {m['cores']} cores, {m['cpu']}, {m['memory_gib']} GiB RAM, {m['os']}, "
        f"Python {m['python']}, {m['date']}, load average {m['load_average'][0]}"
    )
    for rows in args.sizes:
        results["sizes"][str(rows)] = bench.size(rows)
    results["machine"]["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    results["targets"] = judge(results["sizes"])
    results["table"] = table_rows(results["sizes"], results["targets"])
    print(f"scale benchmark, {DATASET}, rows {', '.join(f'{r:,}' for r in args.sizes)}:")
    print(format_table(results["table"]))
    print(summary_line(results["targets"]))
    errors = [(r, e) for r, s in results["sizes"].items() for e in s["errors"]]
    for rows, error in errors:
        print(f"FAILED at {int(rows):,} rows: {error}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    print(f"written: {_relative(str(args.out))}")
    sys.exit(1 if errors else 0)


if __name__ == "__main__":
    main()
