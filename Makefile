# One entry point per job; each creates the virtual environment first, so a fresh clone needs only Python 3.11+.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup demo test lint bench bench-quick chaos chaos-quick clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,bench,lint]'
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/scoring-gateway demo

# The whole suite on Apache Kafka (the first run fetches it from Maven Central into
# ~/.cache/scoring-gateway, or $$SG_KAFKA_CACHE), then the streaming, observability and process
# tests again on the embedded tansu broker that `make demo` uses. Two workers, test by test (most
# tests wait on brokers and processes, not on a core; a module marked `xdist_group` keeps its costly
# fixture on one worker); tests marked `serial` compare timings and run alone afterwards. `pytest`
# alone runs everything in one process.
XDIST := -n 2 --dist loadgroup
test: lint
	$(BIN)/python -m pytest -q $(XDIST) -m "not serial"
	$(BIN)/python -m pytest -q -m serial
	SG_TEST_BROKER=tansu $(BIN)/python -m pytest -q $(XDIST) -m tansu tests/integration

lint: $(STAMP)
	$(BIN)/ruff check gateway testkit tests benchmarks
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python -m benchmarks.run

bench-quick: $(STAMP)
	$(BIN)/python -m benchmarks.run --quick

chaos: $(STAMP)
	$(BIN)/python -m benchmarks.chaos
	$(BIN)/python -m benchmarks.batch_resume

chaos-quick: $(STAMP)
	$(BIN)/python -m benchmarks.chaos --quick

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache
