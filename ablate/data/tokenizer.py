"""Tokenizers: text -> uint16 ids (room for a 65k vocabulary), and back.

A tokenizer has `name`, `vocab_size`, `encode(text) -> np.ndarray[uint16]` of shape (T,),
and `decode(ids) -> str`. Each registers its `data.tokenizer` name in `ablate.registry.TOKENIZERS`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ablate.registry import TOKENIZERS


class ByteTokenizer:
    """UTF-8 bytes as ids: no training, no files, no unknown tokens (vocab 256)."""

    name = "byte"
    vocab_size = 256

    def encode(self, text: str) -> np.ndarray:
        """str -> (T,) uint16, T = number of UTF-8 bytes (lone surrogates become '?')."""
        return np.frombuffer(text.encode("utf-8", errors="replace"), np.uint8).astype(np.uint16)

    def decode(self, ids: Any) -> str:
        """(T,) ids (array, list or CPU tensor) -> str; a block may cut a character in
        half, so invalid UTF-8 becomes U+FFFD instead of raising."""
        return np.asarray(ids, dtype=np.uint8).tobytes().decode("utf-8", errors="replace")


TOKENIZERS.register("byte")(ByteTokenizer)


def get_tokenizer(name: str) -> ByteTokenizer:
    """A tokenizer instance by its `data.tokenizer` name."""
    return TOKENIZERS.get(name).obj()
