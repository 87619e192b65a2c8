"""ENGRAM: content-addressed blobs, refs, documents and segmented logs on any fsspec URI."""

from mnemos.engram.keys import normalize_digest, validate_key
from mnemos.engram.spill import spilling_config, spilling_env
from mnemos.engram.store import BlobReader, Engram

__all__ = ["BlobReader", "Engram", "normalize_digest", "spilling_config", "spilling_env", "validate_key"]
