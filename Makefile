# Two commands do everything on a fresh machine: `make demo` and `make test`.
# Both create .venv if missing and install the package with the pinned CPU build of torch.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
EXTRAS := embedded,onnx,torch,eval,gateway,litellm,dev
# The dashboard's browser test drives Debian's chromium (Playwright, no browser download); the
# clock-skew test shifts a gateway's clock with Debian's libfaketime.
CHROMIUM := /usr/bin/chromium
FAKETIME := /usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo -n)

.PHONY: install demo test lint benchmark wheel clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[$(EXTRAS)]'
	@( test -x $(CHROMIUM) && test -f $(FAKETIME) ) || ! command -v apt-get >/dev/null || \
		( $(SUDO) apt-get update -qq && \
		  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium libfaketime >/dev/null ) || \
		echo "make: chromium or libfaketime could not be installed; the tests that need them will be skipped"
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/llmrouter info
	@echo
	$(BIN)/llmrouter route "hello, how are you?" "explain garbage collection" \
		"architect a distributed system for millions of users" "convert 72 Fahrenheit to Celsius" \
		"why does my python script run out of memory when reading a big CSV?"
	@echo
	$(BIN)/python examples/demo.py
	@echo
	$(BIN)/python examples/gateway_demo.py

test: install
	$(BIN)/python -m pytest -q

benchmark: install
	$(BIN)/python benchmarks/latency.py --json benchmarks/results/latency.json
	$(BIN)/python benchmarks/routing_quality.py

# The wheel carries the ONNX model written from the installed weights, so it installs without torch:
# pip install 'dist/redisvl_llmrouter-<version>-py3-none-any.whl[embedded,onnx]'
wheel: install
	$(BIN)/python -m pip wheel --no-deps --no-build-isolation -q -w dist .

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .ruff_cache
