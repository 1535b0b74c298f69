# Everything we do often. `make demo` and `make test` set themselves up.
# The interpreter itself, not a pyenv shim: with the shims' directory put on PATH below (as
# `.../shims/`), a shim finds itself again and loops forever when 3.13 is not pyenv's version.
PYTHON313 ?= $(shell python3.13 -c 'import sys; print(sys.executable)' 2>/dev/null || echo /root/.pyenv/versions/3.13.0/bin/python3.13)
VENV      := .venv
BIN       := $(VENV)/bin
# sam build looks for python3.13 on PATH.
export PATH := $(abspath $(BIN)):$(dir $(PYTHON313)):$(PATH)
DEBIAN_PACKAGES := docker.io busybox-static iproute2 iptables shellcheck
PYTEST_ARGS ?=
# e.g. DEMO_ARGS='--parameter VpcCidr=10.77.0.0/16' when 10.42.0.0/16 is taken on this machine
DEMO_ARGS ?=
# `make bench BENCH_ARGS=--quick`: one repetition per arm.
BENCH_ARGS ?=

.PHONY: setup debian-packages lint format typecheck validate build test test-unit test-statemachines \
        test-hosts test-e2e demo bench duplicates clean openapi

setup: $(VENV)/.setup-stamp debian-packages

$(VENV)/.setup-stamp: pyproject.toml
	test -x $(BIN)/python || $(PYTHON313) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

# Installs only what is missing; needs root, like the local cloud itself.
debian-packages:
	@missing=""; for p in $(DEBIAN_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: setup
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

typecheck: setup
	$(BIN)/mypy layers/swarmwarden/swarmwarden layers/swarmwarden/slim.py functions localcloud

validate: setup
	$(BIN)/cfn-lint template.yaml
	$(BIN)/sam validate --lint --region us-east-1

build: setup
	$(BIN)/sam build --region us-east-1

test: setup lint typecheck validate build
	$(BIN)/pytest $(PYTEST_ARGS)

test-unit: setup
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

test-statemachines: setup
	$(BIN)/pytest tests/statemachines $(PYTEST_ARGS)

test-hosts: setup
	$(BIN)/pytest tests/hosts $(PYTEST_ARGS)

test-e2e: setup
	$(BIN)/pytest tests/e2e $(PYTEST_ARGS)

demo: setup
	$(BIN)/swarmwarden local demo $(DEMO_ARGS)

bench: setup
	$(BIN)/python -m bench $(BENCH_ARGS)

duplicates:
	duplicates --change

# The HTTP API's OpenAPI document, generated from the routes; tests/unit/test_openapi.py fails when it is stale.
openapi: setup
	$(BIN)/python -m swarmwarden.api.openapi > docs/openapi.json

clean:
	rm -rf .aws-sam .mypy_cache .ruff_cache .pytest_cache .hypothesis
