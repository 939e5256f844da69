"""A tiny random BERT (hidden 32) saved like a real HF model folder, for fast ML-core tests."""
from __future__ import annotations

import string
from pathlib import Path

import torch
from transformers import BertConfig, BertModel, BertTokenizer

from experts.ml.backbone import Backbone, BackboneConfig, load_backbone

WORDS = [
    "the", "a", "cat", "dog", "stock", "market", "goal", "match", "team", "price", "rose", "fell",
    "won", "lost", "game", "bank", "rates", "spam", "free", "win", "call", "now", "hello",
]
TINY_LAYERS = 4
TINY_HIDDEN = 32


def write_tiny_model(folder: Path, *, seed: int = 0, n_layers: int = TINY_LAYERS) -> Path:
    """Save a random BertModel + WordPiece tokenizer that can spell any lowercase ASCII text."""
    folder.mkdir(parents=True, exist_ok=True)
    chars = string.ascii_lowercase + string.digits + string.punctuation
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab = [*specials, *chars, *(f"##{c}" for c in chars), *WORDS]
    vocab_file = folder / "vocab.txt"
    vocab_file.write_text("\n".join(vocab) + "\n", encoding="utf-8")
    tokenizer = BertTokenizer(vocab={tok: i for i, tok in enumerate(vocab)})
    tokenizer.save_pretrained(folder)
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(vocab), hidden_size=TINY_HIDDEN, num_hidden_layers=n_layers,
        num_attention_heads=4, intermediate_size=64, max_position_embeddings=64,
    )
    BertModel(config).save_pretrained(folder)
    return folder


def load_tiny_backbone(folder: Path, **kwargs) -> Backbone:
    return load_backbone(BackboneConfig(path=str(folder), device="cpu", **kwargs))


def sample_texts(n: int, *, seed: int = 0) -> list[str]:
    """Texts of very different lengths, so bucketing actually reorders them."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        length = int(torch.randint(1, 30, (1,), generator=g))
        words = [WORDS[int(j)] for j in torch.randint(0, len(WORDS), (length,), generator=g)]
        out.append(f"{' '.join(words)} {i}")
    return out
