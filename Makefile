# Every target is a thin wrapper over the `fleet` command (or the test tools).
# `make demo` and `make test` work on a fresh machine: they install what they need.

SHELL := /bin/bash
PYTHON ?= python3
UV_VERSION := 0.13.9
TOOLS := .tools
UV := $(shell command -v uv 2>/dev/null || echo $(TOOLS)/bin/uv)
VENV := .venv
FLEET := $(VENV)/bin/fleet
STAMP := $(VENV)/.synced

.PHONY: help demo test test-unit test-integration test-faults lint typecheck up down provision \
        chaos-revoke chaos-deny chaos-throttle chaos-network-block chaos-env-drift \
        chaos-timeout chaos-bad-deploy chaos-restore chaos-status tail-queues console bench gameday \
        gameday-random clean deps-oracle iam-differential

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-22s %s\n", $$1, $$2}'

$(TOOLS)/bin/uv:
	@# uv pins and installs everything else from uv.lock; it comes from PyPI itself.
	$(PYTHON) -m venv $(TOOLS) || { apt-get update -qq && apt-get install -y -qq python3-venv && $(PYTHON) -m venv $(TOOLS); }
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"

$(STAMP): pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen --all-extras --quiet
	@touch $@

deps: $(STAMP)

demo: $(STAMP) ## start the world and the fleet, revoke S3, watch the fleet fix it, stop
	$(FLEET) demo

SCENARIOS ?= scenarios/*.yaml

gameday: $(STAMP) ## run game-day scenarios, each on a fresh world (SCENARIOS=files)
	$(FLEET) gameday --scenario $(SCENARIOS)

ROUNDS ?= 20
SEED ?= 1

gameday-random: $(STAMP) ## random game-day rounds, each on a fresh world, judged from the account (ROUNDS=N SEED=S)
	$(FLEET) gameday --random $(ROUNDS) --seed $(SEED)

# The independent IAM evaluator the world's decisions are compared with (tests/differential):
# an npm package, run by Node, for tests only.
ORACLE := tests/iam_oracle
ORACLE_STAMP := $(ORACLE)/node_modules/.installed

$(ORACLE_STAMP): $(ORACLE)/package.json $(ORACLE)/package-lock.json
	@command -v npm >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm; }
	npm ci --prefix $(ORACLE) --no-audit --no-fund --silent
	@touch $@

deps-oracle: $(ORACLE_STAMP) ## install the independent IAM evaluator (Node) the tests compare with

iam-differential: $(STAMP) $(ORACLE_STAMP) ## every IAM case against the independent evaluator: the README's figures
	$(VENV)/bin/python -m tests.differential.run

CHROMIUM := /usr/bin/chromium

$(CHROMIUM):
	@# The console's browser tests drive Debian's Chromium: no tool can download a browser here.
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver

# pytest runs side by side in worker processes (pyproject's addopts: `-n auto --dist
# loadgroup`; tests/conftest.py sets how many and what stays on one worker). tests/unit or
# tests/infra alone run in one process. PYTEST_XDIST_AUTO_NUM_WORKERS=N sets the number of
# workers; PYTEST_ADDOPTS=-n0 runs serially.
test: $(STAMP) $(CHROMIUM) $(ORACLE_STAMP) lint typecheck ## lint, type-check, and run every test (starts its own emulator, installs Chromium if missing)
	$(VENV)/bin/pytest

test-unit: $(STAMP) ## unit tests only (no emulator)
	$(VENV)/bin/pytest tests/unit

test-integration: $(STAMP) $(CHROMIUM) ## integration tests against the moto server over HTTP
	$(VENV)/bin/pytest tests/integration

test-faults: $(STAMP) ## the fault-survival suite: kill, stop and confuse the fleet; nothing lost (also in `make test`)
	$(VENV)/bin/pytest tests/faults

lint: $(STAMP) ## ruff, and the package layers of ARCHITECTURE.md (import-linter)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports --no-cache

typecheck: $(STAMP) ## mypy
	$(VENV)/bin/mypy

up: $(STAMP) ## run the embedded world in the foreground (TARGETS=N copies of the workload)
	$(FLEET) up $(if $(TARGETS),--targets $(TARGETS))

down: $(STAMP) ## stop the running world
	$(FLEET) down

provision: $(STAMP) ## re-apply the topology and workload spec to the running world
	$(FLEET) provision

FUNCTION_ARG = $(if $(FUNCTION),--function $(FUNCTION))

chaos-revoke: $(STAMP) ## revoke a permission (TARGET=s3|logs|metrics|sns|all, FUNCTION=name)
	$(FLEET) chaos revoke --target $(or $(TARGET),s3) $(FUNCTION_ARG)

chaos-deny: $(STAMP) ## add an explicit Deny (TARGET=..., FUNCTION=name)
	$(FLEET) chaos deny --target $(or $(TARGET),s3) $(FUNCTION_ARG)

chaos-throttle: $(STAMP) ## reserved concurrency to CONCURRENCY (default 0)
	$(FLEET) chaos throttle --concurrency $(or $(CONCURRENCY),0) $(FUNCTION_ARG)

chaos-network-block: $(STAMP) ## remove the security group's egress
	$(FLEET) chaos network-block $(FUNCTION_ARG)

chaos-env-drift: $(STAMP) ## set VAR=VALUE in the function's environment (default DATA_BUCKET)
	$(FLEET) chaos env-drift --var $(or $(VAR),DATA_BUCKET) --value $(or $(VALUE),no-such-bucket) $(FUNCTION_ARG)

chaos-timeout: $(STAMP) ## lower the timeout to SECONDS (default 1: runs time out)
	$(FLEET) chaos timeout --seconds $(or $(SECONDS),1) $(FUNCTION_ARG)

chaos-bad-deploy: $(STAMP) ## publish a version whose handler fails; the alias live points to it
	$(FLEET) chaos bad-deploy $(FUNCTION_ARG)

chaos-restore: $(STAMP) ## put every function back to its baseline
	$(FLEET) chaos restore $(FUNCTION_ARG)

chaos-status: $(STAMP) ## each function against its baseline, and its last runs
	$(FLEET) chaos status $(FUNCTION_ARG)

console: $(STAMP) ## serve the web console on 127.0.0.1:8088 (CONSOLE_TOKEN, or one is printed)
	$(FLEET) console

tail-queues: $(STAMP) ## live queue depths and incidents (Ctrl-C to leave)
	$(FLEET) tail

bench: $(STAMP) ## measure MTTR per fault, a storm, many incidents, overhead, agent cost, fault survival, random game days' pass rate; writes bench/results.json
	$(FLEET) bench

clean: ## remove the virtualenvs and the world's state
	rm -rf $(VENV) $(TOOLS) .fleet .pytest_cache .mypy_cache .ruff_cache
