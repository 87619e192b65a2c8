"""A ``python`` step is stopped when its run is cancelled, and masks the run's credentials in what
it prints, returns and raises.

Cancelling a run left its running python step's function running to its end on its NEURON worker
(a loop went on writing after the run said ``cancelled``), and a python step that printed its
``hf_token`` param showed it in clear in the job's log (``mnemos jobs logs``), where a script step
shows ``***``."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

from tests_support import until

TOKEN = "hf_Zq7SECRETvalue0123456789"
KEY = "sk-given-KEY-9876543210"

MODULE = """
import time
from pathlib import Path


def spin(folder):
    Path(folder, "started").write_text("yes")
    try:
        while not Path(folder, "release").exists():
            try:
                time.sleep(0.05)
            except Exception:  # a step's own broad except does not keep it running
                pass
        Path(folder, "end").write_text("ran to its end")
        return "done"
    except BaseException as exc:
        Path(folder, "stopped").write_text(type(exc).__name__)
        raise


def chatty(token, api_key, fail=False):
    print(f"using token {token} and key {api_key}")
    print("half a line", token[:5], end="")
    print(token[5:], "end")
    if fail:
        raise RuntimeError(f"upstream refused {token}")
    return {"seen": token, "key": api_key}
"""


def _module(pipelines: Any) -> str:
    name = f"walk5_steps_{pipelines.module[-8:]}"
    (pipelines.folder / f"{name}.py").write_text(textwrap.dedent(MODULE))
    return name


def test_cancelling_a_run_stops_its_running_python_step(client: Any, pipelines: Any, tmp_path: Path) -> None:
    module = _module(pipelines)
    folder = tmp_path / "spin"
    folder.mkdir()
    path = pipelines.write([{"name": "spin", "call": f"{module}:spin", "params": {"folder": str(folder)},
                             "outputs": [{"name": "out"}]}], name="cancel-python")  # fmt: skip
    run = client.pipelines.run(str(path), wait=False, progress=False, cache=False)
    until((folder / "started").exists, "the step started", timeout=150)
    client.pipelines.cancel(run.id)
    final = run.wait(timeout=120)
    assert final["status"] == "cancelled" and final["steps"]["spin"]["status"] == "cancelled"
    until((folder / "stopped").exists, "the cancelled python step stopped", timeout=150)
    (folder / "release").write_text("go")
    assert (folder / "stopped").read_text() == "_Stop"
    assert not (folder / "end").exists()
    assert client.pipelines.get(run.id).state()["steps"]["spin"]["digests"] == {}


def test_a_python_step_masks_credentials_in_its_output_result_and_error(client: Any, pipelines: Any) -> None:
    module = _module(pipelines)
    # (api_key once took a param not named like one, ${key}: a run kept that value in clear, and GENOME
    # now refuses such a pipeline, tests/genome/test_pipeline_credentials.py)
    step = {"name": "talk", "call": f"{module}:chatty", "params": {"token": "${hf_token}", "api_key": "${api_key}"}}
    path = pipelines.write([step], name="mask-python", params={"hf_token": "", "api_key": ""})
    given = {"hf_token": TOKEN, "api_key": KEY}
    final = client.pipelines.run(str(path), params=given, progress=False, cache=False).wait(300)
    assert final["status"] == "succeeded", final["error"]
    result = final["steps"]["talk"]["result"]
    assert result == {"seen": "***", "key": "***"}
    log = client.jobs.get(final["steps"]["talk"]["job_ids"][-1]).logs()
    assert "using token *** and key ***" in log and "half a line *** end" in log, log
    assert TOKEN not in log and KEY not in log and TOKEN[:5] + " " not in log

    failing = pipelines.write([{**step, "params": {**step["params"], "fail": True}}], name="mask-fail",
                              params={"hf_token": "", "api_key": ""})  # fmt: skip
    final = client.pipelines.run(str(failing), given, progress=False, cache=False).wait(300)
    assert final["status"] == "failed"
    assert "upstream refused ***" in final["steps"]["talk"]["error"] and TOKEN not in str(final["steps"])
    log = client.jobs.get(final["steps"]["talk"]["job_ids"][-1]).logs()
    assert TOKEN not in log and KEY not in log


def test_a_script_env_var_takes_a_number_or_flag_param(client: Any, pipelines: Any) -> None:
    """``env: [{name: N, value: "${n}"}]`` with an integer param failed the step with
    ``TypeError: expected str, bytes or os.PathLike object, not int`` (and ``0`` became empty)."""
    step = {
        "name": "say",
        "script": 'printf "%s %s %s %s" "$N" "$ZERO" "$FLAG" "$ITEMS" > "$MNEMOS_OUTPUT_OUT"',
        "env": [{"name": "N", "value": "${n}"}, {"name": "ZERO", "value": "${zero}"},
                {"name": "FLAG", "value": "${flag}"}, {"name": "ITEMS", "value": "${items}"}],
        "outputs": [{"name": "out"}],
    }  # fmt: skip
    path = pipelines.write([step], name="env-types", params={"n": 3, "zero": 0, "flag": True, "items": ["a"]})
    final = client.pipelines.run(str(path), params={"n": 20}, progress=False, cache=False).wait(300)
    assert final["status"] == "succeeded", final["error"]
    assert client.pipelines.get(final["id"]).read("out").decode() == '20 0 true ["a"]'
