# The two commands of a new user: `make quickstart` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: quickstart test test-gpu lint install clean bench fashion-mnist

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -e ".[dev,latency]"
	touch $(STAMP)

install: $(STAMP)

quickstart: $(STAMP)
	$(BIN)/prunetune search examples/quickstart.yaml

test: $(STAMP)
	$(BIN)/python -m pytest -m "not gpu" tests

test-gpu: $(STAMP)
	$(BIN)/python -m pytest -m gpu tests

# Benchmarks (never part of `make test`): each writes its figures into docs/.
bench: $(STAMP)
	$(BIN)/python -m bench.methods
	$(BIN)/python -m bench.eagleeye
	$(BIN)/python -m bench.search_quality  # before speedup: it times the searched counts
	$(BIN)/python -m bench.speedup
	$(BIN)/python -m bench.throughput
	$(BIN)/python -m bench.overhead
	$(BIN)/python -m bench.scale

# Fashion-MNIST from the distribution (Debian/Ubuntu, as root): /usr/share/datasets/fashion-mnist
fashion-mnist:
	test -d /usr/share/datasets/fashion-mnist || apt-get install -y dataset-fashion-mnist \
		|| (apt-get update && apt-get install -y dataset-fashion-mnist)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf runs mlruns .pytest_cache
