#!/usr/bin/env bash
# GPU checks in one go, for a machine with CUDA (no weights download: the tiny model is made locally).
#   bash scripts/gpu_check.sh            # gpu-marked tests + vLLM serving on the GPU
# Needs the GPU extra in the venv: pip install -e '.[llm,embed,dev,otlp,vllm]'.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
export HF_HUB_OFFLINE=1 VLLM_NO_USAGE_STATS=1 TOKENIZERS_PARALLELISM=false
export VLLM_CACHE_ROOT=${VLLM_CACHE_ROOT:-$PWD/build/vllm-cache}
"$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device: nothing to check')"
# 1. every gpu-marked test (they skip without CUDA, so here they run)
"$PY" -m pytest -m gpu -q -p no:cacheprovider
# 2. the vLLM serving tests with the engine on the GPU (resources.gpus: 1)
MNEMOS_TEST_VLLM_GPU=1 "$PY" -m pytest tests/relay/test_vllm_serving.py -q -p no:cacheprovider
# 3. the serving benchmark, when it is present
if [ -f benchmarks/serving_peers.py ]; then
  "$PY" benchmarks/serving_peers.py --quick --gpu
fi
