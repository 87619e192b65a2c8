"""A tiny, randomly initialised Llama-style model made locally, for tests and the demo.

Nothing is downloaded: a byte-level BPE tokenizer is trained with ``tokenizers`` on the short
English text below, wrapped as a ``PreTrainedTokenizerFast`` with a chat template, and a
``LlamaForCausalLM`` (hidden 64, 2 layers, 2 heads of 32, 1 KV head) is initialised from a seed.
The same seed gives the same files, byte for byte, with the same library versions.
"""

from __future__ import annotations

from pathlib import Path

from mnemos._deps import require

__all__ = ["CHAT_TEMPLATE", "SPECIAL_TOKENS", "TRAINING_TEXT", "init_tiny"]

SPECIAL_TOKENS = ["<|pad|>", "<|bos|>", "<|end|>", "<|system|>", "<|user|>", "<|assistant|>"]

CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\n' + message['content'] + '<|end|>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)

TRAINING_TEXT = """\
Memory is the quiet engine of every system that learns. A river remembers the shape of its valley,
a forest remembers the fires that cleared it, and a good operator remembers why a change was made.
The platform keeps every artifact under the digest of its content, so a model that was served
yesterday can be served again today, byte for byte, and anyone can check that nothing was altered.
When a request arrives at the gateway, it is authenticated, authorized, limited and traced before
it reaches the model. The model answers one token at a time, and the answer streams back to the
client while the next tokens are still being computed. Many requests share one forward pass: the
batcher gathers them, pads them on the left, and decodes them together, step by step.
Interactive questions go first; batch jobs wait their turn but are never forgotten.
The scheduler keeps a journal. If a worker dies, the job is tried again on a healthy worker after
a short pause that grows longer each time: one second, two seconds, four, up to half a minute.
If the scheduler itself dies, it is restarted and reads its journal back, so no accepted job is lost.
Pipelines are made of steps. The first step prepares the data, the second asks the model, the third
writes an index of embeddings that can be searched by meaning rather than by exact words.
Each output has a name, and a step whose inputs did not change is answered from its cache.
Good tools are boring in the best way. They start when asked, stop when told, say clearly what went
wrong, and never print a secret. They are small enough to read in an afternoon and strong enough
to run for years. Write the test first, measure before you tune, and keep the error messages kind.
The weather was cold that morning. She walked to the station with a cup of tea, read the news on
the train, and thought about the garden: the roses needed water, the apples were nearly ripe, and
the old cat slept in the sun by the kitchen door. In the evening they cooked soup with carrots,
onions and potatoes, talked about books and music, and planned a trip to the mountains in spring.
Numbers: zero, one, two, three, four, five, six, seven, eight, nine, ten, a hundred, a thousand.
Questions: who, what, where, when, why, how? Answers: here, there, now, later, because, like this.
Hello! How are you today? I am fine, thank you. What can I do for you? Please tell me more.
"""


def _require() -> tuple[object, object, object]:
    why = "the tiny model"
    return require("tokenizers", why=why), require("torch", why=why), require("transformers", why=why)


def _train_tokenizer(vocab_size: int):  # type: ignore[no-untyped-def]
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(TRAINING_TEXT.splitlines(keepends=True), trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        pad_token="<|pad|>",
        bos_token="<|bos|>",
        eos_token="<|end|>",
        model_max_length=512,
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def init_tiny(directory: str | Path, seed: int = 0, *, vocab_size: int = 1024) -> Path:
    """Write a tiny random Llama-style model and its tokenizer to ``directory`` (HF format).

    Args:
        directory: the folder to write (created; existing files of the same names are replaced).
        seed: the weights' random seed; the same seed gives the same weights.
        vocab_size: the BPE vocabulary size to train (the model's vocabulary is the trained size).

    Returns:
        The folder, loadable with ``AutoModelForCausalLM`` / ``AutoTokenizer`` and by vLLM.
    """
    _, torch, _ = _require()
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = _train_tokenizer(vocab_size)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=32,  # vLLM's CPU backend needs head_dim >= 32
        max_position_embeddings=512,
        initializer_range=0.05,  # wider logits than the default: greedy ties are rarer
        tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        dtype="float32",
    )
    torch.manual_seed(seed)  # type: ignore[attr-defined]
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out
