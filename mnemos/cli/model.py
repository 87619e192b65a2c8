"""``mnemos model init-tiny|register|list``: make, register and list models (NEURON + GENOME)."""

from __future__ import annotations

from pathlib import Path

import typer

from mnemos.cli._output import Output, console, emit

__all__ = ["app", "init_tiny", "list_models", "register"]

app = typer.Typer(
    help="Models: make the tiny test model, register model folders in ENGRAM, list them.", no_args_is_help=True
)


@app.command("init-tiny")
def init_tiny(
    directory: Path = typer.Argument(..., help="Folder to write the model to."),
    seed: int = typer.Option(0, "--seed", min=-(2**63), max=2**64 - 1,  # what torch.manual_seed takes
                             help="Random seed of the weights (same seed, same files)."),  # fmt: skip
    store: str | None = typer.Option(
        None, "--store", help="Also store it in ENGRAM as ref models/NAME (what engram://models/NAME loads)."
    ),
) -> None:
    """Write a tiny random Llama-style model with a locally trained tokenizer (Hugging Face format)."""
    from mnemos.cli._session import require_local
    from mnemos.neuron.models import init_tiny as make
    from mnemos.neuron.models import store_model, tree_digest

    if store is not None:  # checked before the model is written: `--store "$NAME"` with NAME unset stores nothing
        from mnemos.engram.keys import validate_key
        from mnemos.errors import InvalidKeyError

        try:
            validate_key(store, what="--store")
        except InvalidKeyError as exc:
            raise InvalidKeyError(f"{exc.message}: give the ref name, e.g. --store tiny", param="store") from None
        require_local("model init-tiny --store")
    from mnemos._deps import optional

    progress = optional("transformers.utils.logging")  # without the llm extra, make() says what to install
    if progress is not None:
        progress.disable_progress_bar()  # "Writing model shards: 100%|█…" for one tiny file
    folder = make(directory, seed)
    console.print(f"tiny model written to {folder} ({tree_digest(folder)})")
    if store:
        from mnemos.cli._session import open_client

        digest = store_model(open_client().engram, folder, store)
        console.print(f"stored in ENGRAM as ref models/{store} → {digest}")


@app.command("register")
def register(
    directory: Path = typer.Argument(..., help="Model folder (Hugging Face format)."),
    name: str = typer.Option(..., "--name", help="Model name (lowercase letters, digits, '-', '.')."),
    engine: str | None = typer.Option(
        None, "--engine", help="transformers, vllm, embedding or echo. Default: the Model's, else transformers."
    ),
    family: str | None = typer.Option(None, "--family", help="Default: the Model's, else the config's model_type."),
    version: str | None = typer.Option(None, "--version", help="Default: the digest's first 12 hex digits."),
    param: list[str] = typer.Option([], "--param", help="Runtime param NAME=VALUE (repeatable)."),
    license_id: str | None = typer.Option(
        None, "--license", help="spec.policy.license: the weights' SPDX id (apache-2.0 …), which Policies may require."
    ),
) -> None:
    """Store a model folder in ENGRAM and apply a Model pinned to its digest.

    A Model of that name that exists keeps its spec (resources, replicas, runtime …) but for the
    artifact, the version and the options given. Over --url (verb apply) the files the platform
    lacks are uploaded through the gateway.
    """
    from mnemos.cli._session import open_client
    from mnemos.cli.run import parse_params

    params = parse_params(param, example="maxBatchSize=8")  # before any cluster is reached
    client = open_client(publish=True)
    result = client.register_model(directory, name, engine=engine, family=family, version=version, params=params,
                                   license=license_id)
    model = result.resource
    console.print(
        f"model/{model.name} {result.action} (generation {model.generation}) digest {model.spec.artifact.sha256}"
    )


@app.command("list")
def list_models(output: Output = typer.Option(Output.table, "-o", "--output")) -> None:
    """Registered models: name, generation, engine, family, version and digest."""
    from mnemos.cli._session import open_client

    models = open_client().get("Model")
    emit(
        [m.dump() for m in models],
        output,
        ("NAME", "GENERATION", "ENGINE", "FAMILY", "VERSION", "DIGEST"),
        [
            (m.name, m.generation, m.spec.runtime.engine, m.spec.family, m.spec.version, m.spec.artifact.sha256 or "-")
            for m in models
        ],
    )
