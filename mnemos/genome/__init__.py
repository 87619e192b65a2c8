"""GENOME: resource schemas and the versioned, admission-checked registry."""

from mnemos.genome._base import LABEL_KEY_PATTERN, NAME_PATTERN, ObjectMeta, Resource, check_label_key
from mnemos.genome.adapter import Adapter
from mnemos.genome.admission import admit
from mnemos.genome.function import Function
from mnemos.genome.kinds import KINDS, json_schema, load_paths, parse_documents, parse_resource, resolve_kind
from mnemos.genome.model import Model
from mnemos.genome.pipeline import Pipeline, Step
from mnemos.genome.policy import Policy
from mnemos.genome.registry import ApplyResult, Registry

__all__ = [
    "KINDS",
    "LABEL_KEY_PATTERN",
    "NAME_PATTERN",
    "Adapter",
    "ApplyResult",
    "Function",
    "Model",
    "ObjectMeta",
    "Pipeline",
    "Policy",
    "Registry",
    "Resource",
    "Step",
    "admit",
    "check_label_key",
    "json_schema",
    "load_paths",
    "parse_documents",
    "parse_resource",
    "resolve_kind",
]
