#!/usr/bin/env bash
# GPU checks in one go, for a machine with CUDA (no weights download: the tiny model is made locally).
#   bash scripts/gpu_check.sh            # gpu-marked tests + vLLM serving on the GPU + the serving benchmark
# Needs the GPU extra in the venv: pip install -e '.[llm,embed,dev,otlp,vllm]', or, on an offline machine
# whose image has torch: scripts/gpu_bundle.sh here, scripts/gpu_site.sh there.
# Every step runs (a device lease is short: one failure should not hide the others); exits 1 if any failed.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
export HF_HUB_OFFLINE=1 VLLM_NO_USAGE_STATS=1 TOKENIZERS_PARALLELISM=false RAY_USAGE_STATS_ENABLED=0 PYTHONUNBUFFERED=1
export VLLM_CACHE_ROOT=${VLLM_CACHE_ROOT:-$PWD/build/vllm-cache}
"$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device: nothing to check')" || exit 1
failed=()
# 1. every gpu-marked test (they skip without CUDA, so here they run), from the files that hold them
"$PY" -m pytest -m gpu -q -p no:cacheprovider $(grep -rl --include='test_*.py' 'mark.gpu' tests) || failed+=(gpu-tests)
# 2. the vLLM serving tests with the engine on the GPU (resources.gpus: 0.3, so a rollout's two engines fit)
MNEMOS_TEST_VLLM_GPU=1 "$PY" -m pytest tests/relay/test_vllm_serving.py -q -p no:cacheprovider || failed+=(serving-tests)
# 3. the serving benchmark: MNEMOS, bare Ray Serve LLM and vLLM's own server on the one GPU
"$PY" benchmarks/serving_peers.py --quick --gpu || failed+=(serving-benchmark)
[ ${#failed[@]} -eq 0 ] || { echo "gpu_check: failed: ${failed[*]}"; exit 1; }
echo "gpu_check: all passed"
