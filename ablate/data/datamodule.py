"""LMDataModule: documents -> one token stream per split -> (B, block_size) next-token blocks.

prepare_data (local rank 0): load the corpus with `datasets`, tokenize, write
`<cache_dir>/tokens/<fingerprint>/{train,validation}.npy` (uint16) once, under a file lock,
with `validation.bytes.npy`: the UTF-8 bytes of text each validation token stands for (what
val/bpb divides by). setup (every rank): memory-map those arrays; nothing is copied into RAM
per worker.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from pathlib import Path

import lightning as L
import numpy as np
import torch
from filelock import FileLock
from torch.utils.data import DataLoader, Dataset

from ablate.config.schema import DataConfig
from ablate.config.validate import BPE_DEFAULT_VOCAB
from ablate.data.corpus import corpus_fingerprint, load_corpus
from ablate.data.resumable import EpochPermutationSampler, ResumableDataLoader
from ablate.data.tokenizer import get_tokenizer
from ablate.errors import ConfigError

SPLITS = ("train", "validation")
_VAL_BYTES = "validation.bytes"
_DOC_SEPARATOR = "\n\n"  # documents are joined by text, not by a special token


class BlockDataset(Dataset):
    """Non-overlapping windows of a memory-mapped token array.

    Item i: x = tokens[i*B : i*B+B], y = tokens[i*B+1 : i*B+B+1], both (B,) int64.
    The last token of a block is the first of the next block's x: every token is a target.
    """

    def __init__(self, path: str | Path, block_size: int, bytes_path: str | Path | None = None):
        self.path, self.block_size = str(path), block_size
        self.bytes_path = str(bytes_path) if bytes_path else None
        self._tokens: np.ndarray | None = None
        self._bytes: np.ndarray | None = None
        self.n_tokens = len(self.tokens)

    @property
    def tokens(self) -> np.ndarray:
        # Opened lazily, so each DataLoader worker maps the file itself (see __getstate__).
        if self._tokens is None:
            self._tokens = np.load(self.path, mmap_mode="r")
        return self._tokens

    @property
    def bytes(self) -> np.ndarray:
        if self._bytes is None:
            self._bytes = np.load(self.bytes_path, mmap_mode="r")
        return self._bytes

    def __getstate__(self) -> dict:
        # Pickling a memmap copies the whole array into every spawned worker; send the path.
        return {**self.__dict__, "_tokens": None, "_bytes": None}

    def __len__(self) -> int:
        return (self.n_tokens - 1) // self.block_size

    def __getitem__(self, i: int) -> tuple[torch.Tensor, ...]:
        """(x, y), and with a bytes file the UTF-8 bytes of text its targets y stand for."""
        B = self.block_size
        ids = torch.from_numpy(self.tokens[i * B : i * B + B + 1].astype(np.int64))  # (B+1,)
        if self.bytes_path is None:
            return ids[:-1], ids[1:]  # (B,), (B,)
        n_bytes = int(self.bytes[i * B + 1 : i * B + B + 1].sum(dtype=np.int64))
        return ids[:-1], ids[1:], torch.tensor(n_bytes)


class LMDataModule(L.LightningDataModule):
    """Batches of (x, y), each (batch_size, block_size) int64, y = x shifted left by one."""

    def __init__(self, cfg: DataConfig, cache_dir: str | Path, seed: int = 0):
        super().__init__()
        self.cfg, self.cache_dir, self.seed = cfg, Path(cache_dir), seed
        self.report = _to_stdout  # where prepare_data says what it is doing
        self._tokenizer = None
        self._corpus = None
        self._fingerprint: str | None = None
        self._corpus_fp: str | None = None
        self.train_set: BlockDataset | None = None
        self.val_set: BlockDataset | None = None

    @property
    def tokenizer(self):
        """Built on first use: a BPE is read from its cache, or trained there first."""
        if self._tokenizer is None:
            self._tokenizer = get_tokenizer(
                self.cfg, self.cache_dir, self._corpus_key(),
                train_texts=lambda: self._train_texts())
        return self._tokenizer

    def _train_texts(self):
        self.report(f"data: training a {self.cfg.vocab_size or BPE_DEFAULT_VOCAB}-token BPE on "
                    "the training split (cached for the next runs)")
        for batch in self._load_corpus()["train"].iter(batch_size=1024):
            yield from batch["text"]

    def _corpus_key(self) -> str:
        """The corpus's fingerprint, once per instance (globbing + stat)."""
        if self._corpus_fp is None:
            self._corpus_fp = corpus_fingerprint(self.cfg)
        return self._corpus_fp

    def _load_corpus(self):
        if self._corpus is None:
            self._corpus = load_corpus(self.cfg, self.cache_dir)
        return self._corpus

    @property
    def fingerprint(self) -> str:
        """Key of the tokenized cache (and the `ablate.data_fingerprint` tag)."""
        if self._fingerprint is None:
            key = f"{self._corpus_key()}|{self.tokenizer.name}|{self.cfg.block_size}"
            self._fingerprint = hashlib.sha1(key.encode()).hexdigest()[:16]
        return self._fingerprint

    @property
    def token_dir(self) -> Path:
        return self.cache_dir / "tokens" / self.fingerprint

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.vocab_size

    @property
    def tokens_per_batch(self) -> int:
        return self.cfg.batch_size * self.cfg.block_size

    @property
    def n_train_tokens(self) -> int:
        return self._require_setup().n_tokens

    @property
    def n_val_tokens(self) -> int:
        self._require_setup()
        return self.val_set.n_tokens

    def _is_prepared(self) -> bool:
        return all((self.token_dir / f"{s}.npy").exists() for s in (*SPLITS, _VAL_BYTES))

    def prepare_data(self) -> None:
        """Tokenize the corpus once; later calls (and other processes) reuse the files.
        Says what it does through `self.report` (stdout by default): the first run of a
        corpus spends a while here, and a silent bar stuck at 0 looks like a hang."""
        if self._is_prepared():
            return
        self.token_dir.parent.mkdir(parents=True, exist_ok=True)
        start = time.monotonic()
        # Parallel sweep workers share the cache: one tokenizes, the others wait and reuse.
        lock = FileLock(str(self.token_dir) + ".lock")
        if lock.is_locked:
            self.report("data: another process is tokenizing this corpus; waiting for it")
        with lock:
            if self._is_prepared():
                return
            self.report(f"data: reading and tokenizing the {self.cfg.source} corpus once (cached "
                        f"under {self.token_dir.parent})")
            self.token_dir.mkdir(exist_ok=True)
            corpus = self._load_corpus()
            meta = {"fingerprint": self.fingerprint, "tokenizer": self.tokenizer.name}
            for split in SPLITS:
                tokens, n_bytes = self._tokenize(corpus[split])
                meta[split] = {"n_docs": len(corpus[split]), "n_tokens": int(len(tokens)),
                               "n_bytes": int(n_bytes.sum(dtype=np.int64))}
                _atomic_write(self.token_dir / f"{split}.npy", lambda f, t=tokens: np.save(f, t))
                if split == "validation":
                    _atomic_write(self.token_dir / f"{_VAL_BYTES}.npy",
                                  lambda f, b=n_bytes: np.save(f, b))
            _atomic_write(self.token_dir / "meta.json",
                          lambda f: f.write(json.dumps(meta, indent=2).encode()))
        n_tokens = sum(meta[s]["n_tokens"] for s in SPLITS)
        self.report(f"data: {sum(meta[s]['n_docs'] for s in SPLITS):,} documents, {n_tokens:,} "
                    f"tokens in {time.monotonic() - start:.1f} s")

    def _tokenize(self, docs) -> tuple[np.ndarray, np.ndarray]:
        """Documents -> (T,) uint16 ids, each document followed by "\\n\\n", concatenated;
        and (T,) the UTF-8 bytes of text each token stands for."""
        ids, n_bytes = [np.zeros(0, np.uint16)], [np.zeros(0, np.uint16)]
        for batch in docs.iter(batch_size=1024):
            for i, b in self.tokenizer.encode_bytes([d + _DOC_SEPARATOR for d in batch["text"]]):
                ids.append(i)
                n_bytes.append(b)
        return np.concatenate(ids), np.concatenate(n_bytes)

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        B = self.cfg.block_size
        self.train_set = BlockDataset(self.token_dir / "train.npy", B)
        self.val_set = BlockDataset(self.token_dir / "validation.npy", B,
                                    bytes_path=self.token_dir / f"{_VAL_BYTES}.npy")
        for split, ds in (("train", self.train_set), ("validation", self.val_set)):
            n = ds.n_tokens
            if len(ds) == 0:
                raise ConfigError("data.block_size", B,
                                  f"at most {n - 1} tokens: the {split} split has only {n} tokens",
                                  why="no block fits")
            if len(ds) < self.cfg.batch_size:  # drop_last would silently yield no batch
                raise ConfigError("data.batch_size", self.cfg.batch_size,
                                  f"at most {len(ds)}: the {split} split has only {len(ds)} "
                                  f"blocks of {B} tokens", why="no full batch fits")

    def train_dataloader(self) -> ResumableDataLoader:
        """Shuffled blocks, the order a function of (seed, epoch, rank): the same seed gives the
        same batches, and a run resumed from a checkpoint goes on with the batch it stopped at."""
        ds = self._require_setup()
        trainer = self.trainer
        rank, world = (trainer.global_rank, trainer.world_size) if trainer else (0, 1)
        sampler = EpochPermutationSampler(len(ds), self.seed, rank, world)
        n_workers = self.cfg.num_workers
        return ResumableDataLoader(ds, sampler=sampler, batch_size=self.cfg.batch_size,
                                   consumed=self._batches_consumed, num_workers=n_workers,
                                   persistent_workers=n_workers > 0)

    def _batches_consumed(self) -> int:
        """Batches of the current epoch the trainer has taken: Lightning resumes from this count."""
        return self.trainer.fit_loop.epoch_loop.batch_progress.current.ready

    def probe_batch(self, n: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
        """The first n validation blocks as one (n, block_size) batch: a fixed input for
        checks that must not touch the training loader's position (e.g. the router probe)."""
        self._require_setup()
        ds = self.val_set
        items = [ds[i] for i in range(min(n, len(ds)))]
        return torch.stack([it[0] for it in items]), torch.stack([it[1] for it in items])

    def val_dataloader(self) -> DataLoader:
        """The validation blocks in order, as (x, y, bytes of text y stands for) (every rank
        sees all of them: val/loss is the same number whatever the world size)."""
        self._require_setup()
        n_workers = self.cfg.num_workers
        # drop_last: every batch has the same shape (no recompiles, comparable step times).
        return DataLoader(self.val_set, batch_size=self.cfg.batch_size, drop_last=True,
                          num_workers=n_workers, persistent_workers=n_workers > 0)

    def _require_setup(self) -> BlockDataset:
        if self.train_set is None:
            raise RuntimeError("LMDataModule: call prepare_data() and setup() first")
        return self.train_set


def _to_stdout(line: str) -> None:
    """Progress, not an error: stdout (stderr keeps the one-line error contract)."""
    print(line, file=sys.stdout, flush=True)


def _atomic_write(path: Path, write) -> None:
    """Write via a temp file in the same folder + os.replace: readers never see half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        write(f)
    os.replace(tmp, path)
