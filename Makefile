# Two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test unit setup lint protos bench clean

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "Python 3.11 is required ($(PYTHON) not found)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

run: $(STAMP)
	$(BIN)/archive up

test: $(STAMP)
	@# openssl is a dependency of the suite (the interop tests verify seals and time stamps with it).
	@command -v openssl >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update -qq && apt-get install -y -qq openssl; } || \
		{ echo "openssl is missing: install it (apt-get install openssl)"; exit 1; }
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/python -m pytest -q

# The fast run: no test that starts a process (nats-server, the launcher, openssl).
unit: $(STAMP)
	$(BIN)/python -m pytest -q -m "not integration"

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

protos: $(STAMP)
	$(BIN)/python -m tools.protogen

bench: $(STAMP)
	$(BIN)/python -m tools.bench.eventstore --out docs/benchmarks/eventstore.json
	$(BIN)/python -m tools.bench.blobstore --out docs/benchmarks/blobstore.json
	$(BIN)/python -m tools.bench.ingest --out docs/benchmarks/ingest.json
	$(BIN)/python -m tools.bench.sealing --out docs/benchmarks/sealing.json
	$(BIN)/python -m tools.bench.put_rerun --out docs/benchmarks/put_rerun.json

clean:
	rm -rf $(VENV) var
