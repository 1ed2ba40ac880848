"""Data: corpora (HF `datasets`), tokenizers, and the Lightning DataModule.

`LMDataModule` is imported on first use, so `import ablate.data` pulls in neither
Lightning nor `datasets`.
"""

from ablate.data.corpus import CorpusSources, corpus_fingerprint, load_corpus, resolve_sources
from ablate.data.tokenizer import TOKENIZERS, ByteTokenizer, get_tokenizer

__all__ = [
    "BlockDataset",
    "ByteTokenizer",
    "CorpusSources",
    "LMDataModule",
    "TOKENIZERS",
    "corpus_fingerprint",
    "get_tokenizer",
    "load_corpus",
    "resolve_sources",
]


def __getattr__(name: str):
    if name in ("LMDataModule", "BlockDataset"):
        from ablate.data import datamodule

        return getattr(datamodule, name)
    raise AttributeError(f"module 'ablate.data' has no attribute {name!r}")
