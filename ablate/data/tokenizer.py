"""Tokenizers: text -> uint16 ids (room for a 65k vocabulary), and back.

A tokenizer has `name` (part of the token cache's key), `vocab_size`,
`encode(text) -> np.ndarray[uint16]` of shape (T,), `decode(ids) -> str`, and
`encode_bytes(texts) -> [(ids, n_bytes)]`: each document's ids with the UTF-8 bytes of text
each token stands for (they add up to the document's bytes), so bits per byte can be computed
whatever the tokenizer.

`data.tokenizer` names one of:
- `byte`: UTF-8 bytes (vocabulary 256), or another name registered in
  `ablate.registry.TOKENIZERS` (a class built with no arguments);
- `bpe`: a byte-level BPE of `data.vocab_size` tokens, trained with Hugging Face `tokenizers`
  on the training split only and cached by the corpus fingerprint (a second run loads it);
- a path: a `tokenizer.json`, or a saved Hugging Face tokenizer directory holding one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from ablate.config.validate import BPE, BPE_DEFAULT_VOCAB, tokenizer_file
from ablate.errors import ConfigError
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

    def encode_bytes(self, texts: list[str]) -> list[tuple[np.ndarray, np.ndarray]]:
        out = []
        for text in texts:
            ids = self.encode(text)
            out.append((ids, np.ones(len(ids), np.uint16)))
        return out


TOKENIZERS.register("byte")(ByteTokenizer)


class HFTokenizer:
    """A Hugging Face `tokenizers.Tokenizer` (trained BPE or a local file), no special tokens
    added: documents are joined by text, like the byte tokenizer's."""

    def __init__(self, tok, name: str):
        self.tok, self.name = tok, name
        self.vocab_size = tok.get_vocab_size()

    def encode(self, text: str) -> np.ndarray:
        return np.asarray(self.tok.encode(text, add_special_tokens=False).ids, np.uint16)

    def decode(self, ids: Any) -> str:
        return self.tok.decode(np.asarray(ids, dtype=np.int64).tolist())

    def encode_bytes(self, texts: list[str]) -> list[tuple[np.ndarray, np.ndarray]]:
        out = []
        for text, enc in zip(texts, self.tok.encode_batch(texts, add_special_tokens=False)):
            ids = np.asarray(enc.ids, np.uint16)
            ends = np.asarray([end for _, end in enc.offsets], np.int64)
            out.append((ids, bytes_per_token(text, ends)))
        return out


def bytes_per_token(text: str, char_ends: np.ndarray) -> np.ndarray:
    """The UTF-8 bytes each token accounts for, from its end offset in characters: the text
    from the previous token's end to its own (a gap a normaliser dropped goes to the next
    token, the rest of the text to the last), so the counts add up to the text's bytes. A
    character split over several byte-level tokens counts whole for the first of them."""
    if not len(char_ends):
        return np.zeros(0, np.uint16)
    cum = _char_byte_offsets(text)  # (chars + 1,) byte offset of each character boundary
    ends = np.maximum.accumulate(np.clip(char_ends, 0, len(text)))
    byte_ends = cum[ends]
    byte_ends[-1] = cum[-1]
    return np.diff(byte_ends, prepend=0).astype(np.uint16)


def _char_byte_offsets(text: str) -> np.ndarray:
    raw = text.encode("utf-8", errors="replace")
    if len(raw) == len(text):  # ASCII: a character is a byte
        return np.arange(len(text) + 1, dtype=np.int64)
    cp = np.frombuffer(text.encode("utf-32-le", errors="replace"), np.uint32)
    width = 1 + (cp >= 0x80) + (cp >= 0x800) + (cp >= 0x10000)
    return np.concatenate([[0], np.cumsum(width, dtype=np.int64)])


# -- byte-level BPE, trained offline ------------------------------------------------------------
def train_bpe(texts: Iterable[str], vocab_size: int):
    """A byte-level BPE (GPT-2's pre-tokenisation; all 256 bytes in its alphabet, so no text
    is unknown) of at most `vocab_size` tokens: fewer when the corpus runs out of merges. The
    same texts in the same order give the same tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer=trainer)
    return tok


def bpe_tokenizer(cache_dir: Path, corpus_key: str, vocab_size: int,
                  train_texts: Callable[[], Iterable[str]]) -> HFTokenizer:
    """The BPE of this corpus and size: read from `<cache_dir>/tokenizers/`, else trained on
    `train_texts()` (the training split only) and saved there, under a lock that parallel
    workers share (one trains, the others wait and read)."""
    from filelock import FileLock
    from tokenizers import Tokenizer

    name = f"bpe-{vocab_size}"
    path = Path(cache_dir) / "tokenizers" / f"{name}-{corpus_key}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"):
        if not path.exists():
            tmp = path.with_name(f".{path.name}.tmp")
            train_bpe(train_texts(), vocab_size).save(str(tmp))
            tmp.replace(path)
    return HFTokenizer(Tokenizer.from_file(str(path)), name)


# -- a local tokenizer file ---------------------------------------------------------------------
def file_tokenizer(value: str) -> HFTokenizer:
    from tokenizers import Tokenizer

    path = tokenizer_file(value)
    try:
        tok = Tokenizer.from_file(str(path))
    except Exception as e:  # noqa: BLE001 - the library's parse errors vary by version
        raise ConfigError("data.tokenizer", value, "a Hugging Face tokenizer.json",
                          f"cannot read {path}: {str(e).splitlines()[0][:120]}") from None
    digest = hashlib.sha1(path.read_bytes()).hexdigest()[:12]
    return HFTokenizer(tok, f"file-{digest}")


# -- by name ------------------------------------------------------------------------------------
def get_tokenizer(data, cache_dir: Path | None = None, corpus_key: str = "",
                  train_texts: Callable[[], Iterable[str]] | None = None):
    """The tokenizer `data.tokenizer` names; a BPE also needs where it is cached, the corpus
    key and the training texts (read only when it is not cached yet)."""
    name = data.tokenizer
    if name == BPE:
        if cache_dir is None or train_texts is None:
            raise ValueError("a BPE tokenizer needs cache_dir and train_texts")
        return bpe_tokenizer(cache_dir, corpus_key, data.vocab_size or BPE_DEFAULT_VOCAB,
                             train_texts)
    if name in TOKENIZERS:
        return TOKENIZERS.get(name).obj()
    return file_tokenizer(name)
