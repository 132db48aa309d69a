# pat-booking-be: one repo, one image, one CLI. `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV ?= .venv
PY := $(VENV)/bin/python
BOOKING := $(VENV)/bin/booking
export PAT_BOOKING_CACHE ?= $(HOME)/.cache/pat-booking
PYTEST_ARGS ?=

##@ General

help: ## Show this help
	@awk 'BEGIN {FS = ":.*##"; printf "Usage: make <target>\n"} \
	  /^[a-zA-Z0-9_-]+:.*?##/ { printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2 } \
	  /^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5) }' $(MAKEFILE_LIST)

##@ Development

install: $(VENV)/.installed ## Create .venv with the project (editable) and its dev dependencies

$(VENV)/.installed: pyproject.toml scripts/install.sh
	bash scripts/install.sh $(VENV)
	@touch $@

run: install ## Run the whole platform on embedded defaults (SQLite, in-memory broker, demo data)
	$(BOOKING) run

render: install ## Render the production example CR to stdout
	$(BOOKING) render -f manifests/examples/pat-booking-be-prod.yaml

crds: install ## Regenerate crds/ from the spec model
	$(BOOKING) crd > crds/bookingplatforms.platform.pat-booking.io.yaml

##@ Quality

lint: install ## Ruff and the import rules (dependencies point down to booking_core)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

fmt: install ## Format and autofix
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

typecheck: install ## mypy --strict over the five packages
	$(VENV)/bin/mypy

unit: install ## Unit tests only (no services)
	bash scripts/pytest.sh -m "not integration and not e2e" $(PYTEST_ARGS)

integration: install provision ## Integration tests against real PostgreSQL, Redis, Kafka and kube-apiserver
	bash scripts/pytest.sh -m "integration" $(PYTEST_ARGS)

test: lint typecheck install provision ## Everything that runs here: lint, typecheck, unit, integration, e2e (local control plane) and e2e on kind
	bash scripts/pytest.sh tests $(PYTEST_ARGS)
	$(MAKE) e2e
	$(MAKE) e2e-kind

##@ Infrastructure

provision: ## Install/build PostgreSQL, Redis, Kafka jars, the Kubernetes control plane, the collector, dex and the kind images (cached)
	bash scripts/infra/provision.sh

infra-up: install provision ## Start every part for manual work and print how to reach it
	$(PY) -m booking_testing.infra up

infra-down: install ## Stop what infra-up started
	$(PY) -m booking_testing.infra down

##@ Cluster

e2e: install provision ## e2e suite against the local control plane (operator as a host process)
	bash e2e/run-local.sh

e2e-kind: install ## e2e suite on a kind cluster, the platform really running (offline: builds and caches all it needs)
	bash e2e/run-kind.sh

##@ Benchmarks

bench: install ## Benchmarks; figures as JSON under bench/results/ (one part: make bench BENCH=api)
	@# Not `provision`: its kind step starts dockerd and rebuilds images just before the figures, and
	@# nothing here needs kind or Chromium (issue 15: the workers' ratio read lower through make).
	SKIP_KIND=1 SKIP_CHROMIUM=1 bash scripts/infra/provision.sh
	bash bench/run.sh

profile: install ## Profile the API under wrk load with py-spy (PHASES=search,create,list); speedscope files in bench/results/profiles/
	bash bench/profile.sh $(PHASES)

.PHONY: help install run render crds lint fmt typecheck unit integration test provision infra-up infra-down e2e e2e-kind bench profile
