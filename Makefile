# civicflow — the two commands of the quick start are `make run` and `make test`.
SHELL := bash
.SHELLFLAGS := -o pipefail -c
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
SERVE  ?= 1
PORT   ?= 8001

# Prefect keeps its state inside the project; no telemetry (no network here).
export PREFECT_HOME ?= $(CURDIR)/var/prefect
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export PREFECT_LOGGING_EXTRA_LOGGERS := civicflow
# The temporary server a CLI call starts may need more than 20 s on a busy machine.
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS ?= 120
# Library code also runs outside flows (tests, benchmarks): keep its logs local there.
export PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW := ignore

.PHONY: install system-deps run test lint check bench portal prefect-ui clean

$(VENV)/.installed: pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@# This machine's pip config names package folders that may not exist: drop those warnings only.
	$(BIN)/python -m pip install -q --disable-pip-version-check -c constraints.txt -e '.[dev]' 2>&1 \
	  | { grep -v "^WARNING: Location '.*' is ignored" || true; }
	@touch $@

install: $(VENV)/.installed
	@install -d -m 700 var var/prefect

## run the main job on the embedded defaults (SERVE=0: exit after the job)
run: install
	@# The PostgreSQL example's database (skipped, with a message, without PostgreSQL);
	@# stopped when the job ends so SERVE=0 leaves nothing running.
	@pg_env="$$($(BIN)/python scripts/dev_postgres.py start)"; eval "$$pg_env"; \
	  trap '[ -z "$$pg_env" ] || $(BIN)/python scripts/dev_postgres.py stop >/dev/null' EXIT; \
	  $(BIN)/civicflow run --port $(PORT) $(if $(filter 0,$(SERVE)),--no-serve,--serve)

## Debian packages the tests need (Chromium for the browser tests), installed when missing
system-deps:
	@bash scripts/system-deps.sh

# axe-core for the accessibility tests, from the npm registry (the PyPI bundles are older)
AXE_CORE  := 4.14.1
AXE_STAMP := $(VENV)/node/.axe-core-$(AXE_CORE)

$(AXE_STAMP): | $(VENV)/.installed system-deps
	npm install --prefix $(VENV)/node --no-save --no-audit --no-fund --loglevel=error axe-core@$(AXE_CORE)
	@touch $@

## set up and pass the tests
test: install system-deps $(AXE_STAMP)
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check src flows tests benchmarks scripts
	$(BIN)/ruff format --check src flows tests benchmarks scripts
	$(BIN)/mypy

check: install
	$(BIN)/civicflow check

portal: install
	$(BIN)/civicflow portal serve --port $(PORT)

## every benchmark, the scale benchmark first (its table also in bench/results.json); the
## output (machine first) also goes to var/bench/latest.txt. ROWS="100000" (or BENCH_ROWS)
## is a quick check: the scale benchmark only, at those sizes. Its progress goes to the
## terminal (fd 3), not to the file.
ROWS ?= $(BENCH_ROWS)
bench: install
	@install -d -m 700 var/bench
	@{ echo "machine: $$(nproc) cores, $$(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1)," \
	    "$$(free -g | awk '/^Mem:/ {print $$2}') GiB RAM, $$(. /etc/os-release && echo $$PRETTY_NAME)," \
	    "Python $$($(BIN)/python -c 'import platform; print(platform.python_version())'), $$(date -u +%FT%TZ)"; \
	  echo "== benchmarks/bench_scale.py $(ROWS)"; \
	  $(BIN)/python benchmarks/bench_scale.py $(if $(strip $(ROWS)),--rows "$(ROWS)") 2>&3 || exit 1; \
	  $(if $(strip $(ROWS)),exit 0;) \
	  for b in benchmarks/bench_*.py; do \
	    [ "$$b" = benchmarks/bench_scale.py ] && continue; \
	    echo "== $$b"; $(BIN)/python $$b || exit 1; \
	  done; \
	  for kind in datasette socrata; do \
	    echo "== benchmarks/bench_portal.py 9999 --portal $$kind"; \
	    $(BIN)/python benchmarks/bench_portal.py 9999 --portal $$kind || exit 1; \
	  done; \
	} 3>&2 2>&1 | tee var/bench/latest.txt

## the Prefect UI over this project's run history (var/prefect), at http://127.0.0.1:4200
prefect-ui: install
	$(BIN)/prefect server start --host 127.0.0.1 --port 4200

clean:
	rm -rf var
