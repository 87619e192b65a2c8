"""SYNKRON: pipeline runs — a DAG of steps executed as CORTEX jobs, outputs as ENGRAM refs,
resumable and cached — and the embedding spaces that ``index`` steps write.

>>> client = mnemos.connect()
>>> run = client.pipelines.run("pipelines/text-gen-artifacts.yaml")
>>> client.spaces.search("llm-dev", "how do plants make energy", k=3)
"""

from mnemos.synkron.api import PipelinesAPI, RunHandle
from mnemos.synkron.spaces import SpacesAPI
from mnemos.synkron.steps import StepContext, StepFailedError, prepare_prompts

__all__ = ["PipelinesAPI", "RunHandle", "SpacesAPI", "StepContext", "StepFailedError", "prepare_prompts"]
