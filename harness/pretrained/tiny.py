"""A tiny randomly initialised causal LM and a local tokenizer, saved like any Hugging Face model.

For tests and plumbing checks that must not download weights: ``save_tiny_model(directory)``
writes a model of a few layers and width 64 (Llama, Qwen2 or Mistral, from their ``transformers``
configs) and a byte-level BPE tokenizer trained on a few hundred lines of the shipped
public-domain sample (tasks/data/haystack/), with a minimal chat template, through
``save_pretrained``; ``PretrainedLM.load(directory)`` then loads it as it loads a real model.
Its outputs are random: it proves the plumbing, not any accuracy. From the shell::

    python -m harness.pretrained.tiny TINY_MODEL_PATH [--architecture llama|qwen2|mistral] [--sliding-window W]
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Optional

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import LlamaConfig, MistralConfig, PreTrainedTokenizerFast, Qwen2Config

from tasks.sample_corpus import SAMPLE_CORPUS

CONFIGS = {"llama": LlamaConfig, "qwen2": Qwen2Config, "mistral": MistralConfig}
SPECIALS = ["<s>", "</s>", "<pad>"]
CHAT_TEMPLATE = ("{% for message in messages %}<s>{{ message['role'] }}: {{ message['content'] }}\n{% endfor %}"
                 "{% if add_generation_prompt %}<s>assistant: {% endif %}")
TRAINING_LINES = 400


def tiny_tokenizer(vocab_size: int = 512) -> PreTrainedTokenizerFast:
    """A byte-level BPE (any text encodes) trained on the shipped sample, with <s> (opening every text), </s> and <pad>."""
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    lines = [line for line in SAMPLE_CORPUS.read_text(encoding="utf-8").splitlines() if line.strip()]
    bpe.train_from_iterator(lines[:TRAINING_LINES], trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=SPECIALS, show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    bpe.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 0)])  # BOS, as Llama's
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token="<s>", eos_token="</s>", pad_token="<pad>")
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def tiny_model(architecture: str = "llama", vocab_size: int = 512, sliding_window: Optional[int] = None, seed: int = 0):
    """A randomly initialised causal LM: 2 layers, width 64, 4 query and 2 key-value heads (grouped queries)."""
    if architecture not in CONFIGS:
        raise ValueError(f"unknown architecture {architecture!r}; choose one of {sorted(CONFIGS)}")
    from transformers import AutoModelForCausalLM

    options = dict(vocab_size=vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                   num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
                   bos_token_id=0, eos_token_id=1, pad_token_id=2, tie_word_embeddings=False)
    if architecture == "mistral":
        options["sliding_window"] = sliding_window
    elif architecture == "qwen2" and sliding_window is not None:
        options.update(use_sliding_window=True, sliding_window=sliding_window, max_window_layers=0)
    elif sliding_window is not None:
        raise ValueError(f"{architecture} has no sliding-window attention of its own; use mistral or qwen2")
    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(CONFIGS[architecture](**options), attn_implementation="sdpa").eval()


def save_tiny_model(directory: str | Path, architecture: str = "llama", sliding_window: Optional[int] = None,
                    seed: int = 0) -> Path:
    """Save a tiny random model and its tokenizer to ``directory`` (created); returns the directory."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer = tiny_tokenizer()
    tiny_model(architecture, len(tokenizer), sliding_window, seed).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(description="Save a tiny random causal LM and tokenizer (no download).")
    parser.add_argument("directory")
    parser.add_argument("--architecture", default="llama", choices=sorted(CONFIGS))
    parser.add_argument("--sliding-window", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    arguments = parser.parse_args(argv)
    print(save_tiny_model(arguments.directory, arguments.architecture, arguments.sliding_window, arguments.seed))


if __name__ == "__main__":
    main()
