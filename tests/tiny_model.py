"""Build a tiny random Llama with a tokenizer made in code, for tests that only need a real engine.

head_dim is 64 because vLLM's CPU attention rejects smaller heads. Nothing is downloaded.
"""

from __future__ import annotations

from pathlib import Path

CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
_CORPUS = [
    "I feel sad today because my exam went badly and I do not know what to do.",
    "It sounds like that exam really mattered to you. What happened?",
    "My friend stopped talking to me and I feel lonely at school.",
    "Thank you for listening, I feel a little better now.",
    "The quick brown fox jumps over the lazy dog 0123456789.",
]
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def build_tokenizer(out: Path) -> int:
    """Train a small byte-level BPE in code and save it as an HF fast tokenizer; return its vocab size."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=384, special_tokens=SPECIALS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(_CORPUS * 4, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        unk_token="<|endoftext|>",
        pad_token="<|im_end|>",
    )
    fast.chat_template = CHATML
    fast.save_pretrained(out)
    return int(tok.get_vocab_size())


def build_tiny_llama(out: Path, *, seed: int = 0) -> Path:
    """Write a 2-layer random Llama (hidden 128, 2 heads of 64) and its tokenizer into ``out``."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    out.mkdir(parents=True, exist_ok=True)
    vocab = build_tokenizer(out)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(out)
    config = LlamaConfig(
        vocab_size=vocab,
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        head_dim=64,
        max_position_embeddings=8192,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(out)
    return out


def write_manifest(folder: Path, name: str, *, max_model_len: int = 512, system_prompt: str | None = None) -> Path:
    """A model.yaml serving the model in ``folder`` (source ``.``)."""
    import yaml

    manifest = {
        "name": name,
        "source": ".",
        "system_prompt": system_prompt,
        "sampling": {"max_tokens": 16, "temperature": 1.0, "top_p": 1.0},
        "engine": {"dtype": "bfloat16", "max_model_len": max_model_len, "enforce_eager": True, "max_num_seqs": 16},
    }
    path = folder / "model.yaml"
    path.write_text(yaml.safe_dump(manifest, sort_keys=False))
    return path
