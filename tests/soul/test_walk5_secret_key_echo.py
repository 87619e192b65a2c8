"""A value typed where a secret's key goes is refused without being echoed, by every store.

``mnemos secret get llm 'sk-live value+'`` (file store) printed ``error: secret 'llm' has no key
'sk-live value+'``: the file and vault stores checked a key's name on ``set`` only, so ``get`` and
``delete`` named the text back, which ``check_secret_name`` exists to prevent.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mnemos.errors import ValidationError
from mnemos.soul.secrets import EngramSecretStore, FileSecretStore, SecretStore

PASTED = "sk-live value+/x"


@pytest.mark.parametrize("kind", ["file", "engram"])
def test_get_and_delete_refuse_a_bad_key_without_echoing_it(kind: str, tmp_path: Path, local_engram: object) -> None:
    store: SecretStore = FileSecretStore(tmp_path / "secrets") if kind == "file" else EngramSecretStore(local_engram)
    store.set("llm", "OPENAI", "v")
    for call in (lambda: store.get("llm", PASTED), lambda: store.delete("llm", PASTED)):
        with pytest.raises(ValidationError) as exc:
            call()
        assert exc.value.param == "key" and "sk-live" not in exc.value.message
    assert store.get("llm", "OPENAI") == "v"
