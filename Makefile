# The two commands of a new user: `make quickstart` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: quickstart test test-gpu lint install clean bench fashion-mnist browser

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -e ".[dev,latency]"
	touch $(STAMP)

install: $(STAMP)

quickstart: $(STAMP)
	$(BIN)/prunetune search examples/quickstart.yaml

# Two pytest workers (pytest-xdist): the integration tests, one group in one worker, beside
# the unit tests in the other (tests/conftest.py); `--durations` prints the slowest at the end
test: $(STAMP) browser
	$(BIN)/python -m pytest -m "not gpu" -n 2 --dist loadgroup --durations=25 tests

# Debian's chromium, for the test that renders pareto/front.html in a real browser
# (installed where this runs as root; elsewhere that one test is skipped, saying why)
browser:
	@command -v chromium >/dev/null 2>&1 || apt-get install -y chromium >/dev/null 2>&1 \
		|| (apt-get update >/dev/null 2>&1 && apt-get install -y chromium >/dev/null 2>&1) \
		|| echo "chromium could not be installed here (not root?): the browser test will be skipped"

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
