"""Build Qwen3 models locally for tests and benchmarks (no model hub on these machines).

``build_tiny_qwen3`` makes a ~100k-parameter Qwen3 with its own byte-level BPE tokenizer
and a Qwen3-style chat template; vLLM loads it in seconds on CPU. ``build_qwen3_like``
makes a random-weight model with a real model's exact architecture (Qwen3-1.7B), whose
latency is the real model's latency. Answers of both are random: tests assert validity
and plumbing, never semantics.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

# Qwen3's template logic for the parts we use: ChatML turns, and an empty think block in
# the generation prompt when ``enable_thinking`` is false (non-thinking mode).
CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}"
    "{{- '<|im_start|>assistant\\n' }}"
    "{%- if enable_thinking is defined and enable_thinking is false %}"
    "{{- '<think>\\n\\n</think>\\n\\n' }}"
    "{%- endif %}"
    "{%- endif %}"
)

# Qwen3-1.7B's config.json (architecture fields), so no download is needed.
QWEN3_CONFIGS: dict[str, dict[str, Any]] = {
    "Qwen3-1.7B": {
        "hidden_size": 2048,
        "num_hidden_layers": 28,
        "num_attention_heads": 16,
        "num_key_value_heads": 8,
        "head_dim": 128,
        "intermediate_size": 6144,
        "vocab_size": 151936,
        "tie_word_embeddings": True,
        "rope_theta": 1000000.0,
        "max_position_embeddings": 40960,
        "rms_norm_eps": 1e-6,
        "hidden_act": "silu",
        "attention_bias": False,
    },
}


def _corpus() -> list[str]:
    """A deterministic corpus: the router's prompt, the default routes and their examples,
    so prompts tokenize to realistic lengths with a small vocabulary."""
    import yaml

    from app.settings import DEFAULT_CONFIG
    from strategies.intent.prompt import INSTRUCTION, QUESTION

    config = yaml.safe_load(DEFAULT_CONFIG.read_text(encoding="utf-8"))
    lines = [INSTRUCTION, QUESTION, "".join(chr(c) for c in range(32, 127))]
    for intent in config.get("intents", []):
        lines.append(json.dumps({"name": intent["name"], "description": intent["description"]}))
        lines += [json.dumps({"role": "user", "content": ex}) for ex in intent["examples"]]
    return lines * 4


def build_tokenizer(path: Path | None = None, vocab_size: int = 1000) -> Any:
    """Train a byte-level BPE and wrap it as a Qwen-style fast tokenizer (~1 s)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=["<|im_start|>"],
        model_max_length=4096,
    )
    fast.chat_template = CHAT_TEMPLATE
    if path is not None:
        fast.save_pretrained(str(path))
    return fast


def _save_model(path: Path, tokenizer: Any, config_kwargs: dict[str, Any], dtype: str) -> Path:
    import torch
    from transformers import GenerationConfig, Qwen3Config, Qwen3ForCausalLM

    config = Qwen3Config(
        bos_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"),
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **config_kwargs,
    )
    torch_dtype = getattr(torch, dtype)
    previous = torch.get_default_dtype()
    torch.manual_seed(0)
    try:
        torch.set_default_dtype(torch_dtype)
        model = Qwen3ForCausalLM(config)
    finally:
        torch.set_default_dtype(previous)
    model.save_pretrained(str(path), safe_serialization=True)
    GenerationConfig(
        bos_token_id=config.bos_token_id,
        eos_token_id=config.eos_token_id,
        pad_token_id=config.pad_token_id,
    ).save_pretrained(str(path))
    tokenizer.save_pretrained(str(path))
    return path


def build_tiny_qwen3(path: Path | str, max_position_embeddings: int = 4096) -> Path:
    """A tiny random Qwen3 (hidden 64, 2 layers, head_dim 32) with its tokenizer, in ``path``.

    head_dim must be >= 32: vLLM's CPU attention has no kernel for smaller heads.
    """
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer()
    config = {
        "vocab_size": len(tokenizer),
        "hidden_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 32,
        "intermediate_size": 128,
        "max_position_embeddings": max_position_embeddings,
        "tie_word_embeddings": True,
    }
    return _save_model(path, tokenizer, config, dtype="bfloat16")


def build_qwen3_like(
    path: Path | str, config_from: str = "Qwen3-1.7B", dtype: str = "bfloat16"
) -> Path:
    """A model with ``config_from``'s exact architecture and random weights, in ``path``.

    Reuses the tiny tokenizer: its ids are all below the real vocab size, so the model
    runs; only the embedding rows for those ids are ever read. Latency matches the real
    model's for the same number of tokens.
    """
    if config_from not in QWEN3_CONFIGS:
        raise ValueError(f"unknown architecture {config_from!r}; known: {sorted(QWEN3_CONFIGS)}")
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer()
    return _save_model(path, tokenizer, dict(QWEN3_CONFIGS[config_from]), dtype=dtype)
