#!/usr/bin/env bash
# A site tree for an offline CUDA machine whose image already holds torch (Python 3.12, torch 2.11 +
# CUDA 13, transformers, numpy, pyarrow, triton): the Ray, vLLM and MNEMOS dependencies it lacks,
# packed and split into parts small enough to carry one at a time.
#   bash scripts/gpu_bundle.sh [OUT_DIR]        # here, with PyPI reachable: OUT_DIR/site.part.NN
#   bash scripts/gpu_site.sh PARTS_DIR          # there, once every part is in PARTS_DIR: unpack, check
#
# vLLM's CUDA wheel is built against one torch: 0.26.0 is the one for torch 2.11, and Ray 2.58 is the
# Ray Serve LLM that matches vLLM 0.26 (Ray 2.60's imports modules vLLM 0.26 lacks). MNEMOS runs on
# Ray 2.58 without Serve's max_surge_percent (it logs that rollouts replace replicas in place).
# Kept out to fit: FlashAttention's kernels (float32 engines use Triton attention), the MoE kernels,
# vllm-rs, CUTLASS headers, Ray's jars and RLlib.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=$(realpath -m "${1:-build/gpu-bundle}")
PART_BYTES=${PART_BYTES:-58000000}
VLLM=${VLLM:-0.26.0} RAY=${RAY:-2.58.0}
PIP=${PIP:-.venv/bin/python -m pip}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
TARGET=(--only-binary=:all: --python-version 3.12 --implementation cp --platform any --platform manylinux1_x86_64
        --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_24_x86_64
        --platform manylinux_2_27_x86_64 --platform manylinux_2_28_x86_64 --platform manylinux_2_31_x86_64
        --platform manylinux_2_34_x86_64)

$PIP download -q --no-deps "${TARGET[@]}" -d "$WORK/vllm" "vllm==$VLLM"
# vLLM's own needs, less what the image has (torch and its kernels, transformers, numpy, opencv)
# and those pinned to torch, fetched below without their needs.
unzip -p "$WORK"/vllm/vllm-*.whl '*/METADATA' | sed -n 's/^Requires-Dist: //p' | grep -v 'extra ==' \
  | grep -v -E '^(torch|torchaudio|torchvision|torchcodec|PyNvVideoCodec|flashinfer|apache-tvm|tilelang|nvidia-|nvtx|fastsafetensors|quack|tokenspeed|humming|numba|transformers|tokenizers|safetensors|numpy|opencv|compressed-tensors|xgrammar|depyf|lm-format-enforcer|outlines_core)' \
  > "$WORK/req.txt"
cat >> "$WORK/req.txt" <<EOF
ray[serve,default]==$RAY
pydantic>=2.7,<3
pydantic-settings>=2.3
fsspec
s3fs
smart_open[s3]>=7
prometheus-client
opentelemetry-api
opentelemetry-sdk
kubernetes
pyyaml
typer
rich
httpx
aiohttp
pyjwt[crypto]
cryptography
croniter
blake3
jinja2
jsonschema
regex
pytest
pytest-timeout
moto[server]>=5
boto3
openai
EOF
$PIP download -q "${TARGET[@]}" -d "$WORK/dl" -r "$WORK/req.txt"
# xgrammar 0.2.8+ needs apache-tvm-ffi 0.1.11, which vLLM 0.26 pins at 0.1.10.
$PIP download -q --no-deps "${TARGET[@]}" -d "$WORK/dl" compressed-tensors==0.17.0 xgrammar==0.2.7 \
  apache-tvm-ffi==0.1.10 depyf==0.20.0 lm-format-enforcer==0.11.3 outlines_core==0.2.14
rm -f "$WORK"/dl/{opencv_python_headless,numpy,pyarrow,sympy,networkx,ninja,pillow,setuptools}-*.whl

$PIP install -q --no-index --no-deps --no-compile "${TARGET[@]}" --target "$WORK/site" "$WORK"/dl/*.whl \
  "$WORK"/vllm/*.whl
(cd "$WORK/site" && rm -rf bin ray/jars ray/rllib cfnlint vllm/third_party vllm/vllm-rs \
  vllm/vllm_flash_attn/_vllm_fa2_C.abi3.so vllm/vllm_flash_attn/_vllm_fa3_C.abi3.so vllm/_moe_C_stable_libtorch.abi3.so)
mkdir -p "$OUT" && rm -f "$OUT"/site.part.*
tar cf - -C "$WORK/site" . | xz -T0 -6 | split -b "$PART_BYTES" -d -a 2 - "$OUT/site.part."
ls -l "$OUT"
