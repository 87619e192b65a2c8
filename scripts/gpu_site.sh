#!/usr/bin/env bash
# On the offline CUDA machine: unpack the parts scripts/gpu_bundle.sh made into a site tree and put it,
# and this checkout, first on the image's python3 path (a .pth file: subprocesses, Ray's workers and
# vLLM's server see it too), then run the GPU checks with that python3.
#   bash scripts/gpu_site.sh PARTS_DIR [--no-check]
set -euo pipefail
cd "$(dirname "$0")/.."
PARTS=${1:?the folder holding site.part.NN}
SITE=${SITE:-/tmp/mnemos-site}
PY=${PY:-python3}
if [ ! -f "$SITE/.complete" ]; then
  mkdir -p "$SITE"
  cat "$PARTS"/site.part.* | xz -d | tar x -C "$SITE"
  touch "$SITE/.complete"
fi
purelib=$("$PY" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
echo "import sys; sys.path[:0] = [p for p in ['$SITE', '$PWD'] if p not in sys.path]" > "$purelib/00-mnemos-site.pth"
"$PY" -c "import torch, ray, vllm; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'ray', ray.__version__, 'vllm', vllm.__version__)"
[ "${2:-}" = "--no-check" ] && exit 0
# The image's packages are not the pinned ones: their deprecation warnings are not this repo's failures.
PY="$PY" PYTEST_ADDOPTS="${PYTEST_ADDOPTS:-} -p no:warnings" exec bash scripts/gpu_check.sh
