"""Corpora: `DataConfig` -> train/validation documents, all loaded through HF `datasets`.

Two steps, so that the cheap one can be used alone:
- `resolve_sources(cfg)` finds the files (glob + stat only) and splits them by file;
  `corpus_fingerprint(cfg)` hashes that result without reading any file contents.
- `load_corpus(cfg, cache_dir)` loads the documents: a `DatasetDict` with splits
  `train` and `validation`, each with one string column `text` (one row = one document).

The default corpus is the Python standard library's own source (~1,800 files, ~30 MB on
CPython 3.11), loaded with the same `text` builder a user's `.txt` files go through.
`datasets` is imported inside functions: `HF_HUB_OFFLINE` is read when it is imported, and
the CLI sets it first; importing this module stays cheap.
"""

from __future__ import annotations

import functools
import glob
import hashlib
import json
import math
import os
import sysconfig
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ablate.config.schema import DATA_SOURCES, DataConfig
from ablate.errors import ConfigError

if TYPE_CHECKING:
    from datasets import Dataset, DatasetDict

SOURCES = DATA_SOURCES
_EXCLUDED_DIRS = {"site-packages", "dist-packages"}  # installed packages are not the stdlib
_HASH_BUCKETS = 10_000
_FORMAT_VERSION = 1  # bump when the split rule or document unit changes: old caches die


@dataclass(frozen=True)
class CorpusSources:
    """What `load_corpus` will read: a builder and its files, or a hub dataset.

    `files` are (absolute path, key) pairs; the key (a path relative to the corpus root)
    is what the hash split and the fingerprint see, so they do not depend on where the
    files live. `validation` empty and `train` one file: split that file by document.
    """

    builder: str  # text | json | parquet | hub
    train: tuple[tuple[str, str], ...] = ()
    validation: tuple[tuple[str, str], ...] = ()
    sample_by: str = "paragraph"  # text builder only: document for stdlib files
    name: str | None = None  # hub
    subset: str | None = None  # hub


def is_validation_file(relpath: str, val_fraction: float) -> bool:
    """The split rule: a stable hash of the relative path (not Python's salted `hash`)."""
    bucket = int(hashlib.sha1(relpath.encode("utf-8")).hexdigest(), 16) % _HASH_BUCKETS
    return bucket < val_fraction * _HASH_BUCKETS


def split_by_file(
    files: list[tuple[str, str]], val_fraction: float
) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """Split (path, relpath) pairs into (train, validation); both end up non-empty."""
    train = [f for f in files if not is_validation_file(f[1], val_fraction)]
    val = [f for f in files if is_validation_file(f[1], val_fraction)]
    # Few files (max_docs, a small glob): the hash may leave a side empty; move one file.
    if not val and len(train) > 1:
        val.append(train.pop())
    if not train and len(val) > 1:
        train.append(val.pop(0))
    return train, val


@functools.cache
def stdlib_files() -> tuple[tuple[str, str], ...]:
    """All `*.py` under the stdlib directory but outside site-/dist-packages, by relpath.
    Listed once per process (a walk of ~27k paths, ~0.7 s; a sweep builds every trial's
    data): the interpreter's own library does not change while it runs."""
    root = Path(sysconfig.get_paths()["stdlib"])
    found = []
    for path in root.rglob("*.py"):
        rel = path.relative_to(root)
        if _EXCLUDED_DIRS.isdisjoint(rel.parts) and path.is_file():
            found.append((str(path), rel.as_posix()))
    return tuple(sorted(found, key=lambda f: f[1]))


def expand_files(patterns: list[str], key: str) -> list[tuple[str, str]]:
    """Expand paths/globs (sorted, deduplicated); each must match at least one file."""
    paths: list[str] = []
    for pattern in patterns:
        matched = sorted(p for p in glob.glob(os.path.expanduser(pattern), recursive=True)
                         if os.path.isfile(p))
        if not matched:
            is_dir = any(os.path.isdir(p) for p in glob.glob(os.path.expanduser(pattern)))
            why = "a directory, not a file (give a glob: DIR/*.txt)" if is_dir else "no such file"
            raise ConfigError(key, pattern, "existing files or globs", why=why)
        paths.extend(os.path.abspath(p) for p in matched)
    paths = sorted(set(paths))
    # Relative to the files' common folder: the split survives moving the data folder.
    root = os.path.commonpath(paths) if len(paths) > 1 else os.path.dirname(paths[0])
    return [(p, Path(os.path.relpath(p, root)).as_posix()) for p in paths]


def resolve_sources(cfg: DataConfig) -> CorpusSources:
    """Find and split the files `cfg` names (stat only; no file is read)."""
    if cfg.source not in SOURCES:
        raise ConfigError("data.source", cfg.source, ", ".join(SOURCES), why="unknown source")
    if cfg.source == "hub":
        if not cfg.name:
            raise ConfigError("data.name", cfg.name, "a Hugging Face Hub dataset name",
                              why="data.source=hub needs a name")
        return CorpusSources("hub", name=cfg.name, subset=cfg.subset)
    if cfg.source == "stdlib":
        files = stdlib_files()[: cfg.max_docs]  # the first max_docs files, before the split
        _check_val_fraction(cfg)
        train, val = split_by_file(files, cfg.val_fraction)
        if not train or not val:
            raise ConfigError("data.max_docs", cfg.max_docs, "at least 2",
                              why="too few files for a train and a validation split")
        return CorpusSources("text", tuple(train), tuple(val), sample_by="document")
    if not cfg.files:
        raise ConfigError("data.files", cfg.files, "existing files or globs",
                          why=f"data.source={cfg.source} needs files")
    files = expand_files(list(cfg.files), "data.files")
    if cfg.validation_files:
        val = expand_files(list(cfg.validation_files), "data.validation_files")
        return CorpusSources(cfg.source, tuple(files), tuple(val))
    _check_val_fraction(cfg)
    if len(files) == 1:  # one file: load_corpus splits it by document instead
        return CorpusSources(cfg.source, tuple(files))
    train, val = split_by_file(files, cfg.val_fraction)
    return CorpusSources(cfg.source, tuple(train), tuple(val))


def corpus_fingerprint(cfg: DataConfig) -> str:
    """A short hex key for the documents `cfg` yields: changes when they might change.

    Stdlib files are keyed by relpath + size (same Python, same key on every machine);
    user files by absolute path + size + mtime, so editing a file in place invalidates
    the cache (the price: the key is per machine). Hub data by name/subset only.
    """
    src = resolve_sources(cfg)

    def stat(files: tuple[tuple[str, str], ...]) -> list[list]:
        if cfg.source == "stdlib":
            return [[rel, os.stat(path).st_size] for path, rel in files]
        return [[path, os.stat(path).st_size, os.stat(path).st_mtime_ns] for path, _ in files]

    key = {
        "version": _FORMAT_VERSION,
        "source": cfg.source,
        "sample_by": src.sample_by if src.builder == "text" else None,
        "train": stat(src.train),
        "validation": stat(src.validation),
        "name": src.name,
        "subset": src.subset,
        "val_fraction": cfg.val_fraction,
        "max_docs": cfg.max_docs,
        "text_field": cfg.text_field,
    }
    return hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def load_corpus(cfg: DataConfig, cache_dir: str | Path) -> DatasetDict:
    """Load the documents: {"train", "validation"} -> Dataset with one `text` column.

    HF's own cache lives in `<cache_dir>/hf`. For non-stdlib sources `max_docs` keeps the
    first N documents of each split (stdlib applies it to files, in `resolve_sources`).
    """
    import datasets

    src = resolve_sources(cfg)
    hf_cache = str(Path(cache_dir) / "hf")
    if src.builder == "hub":
        splits = _load_hub(src, cfg, hf_cache)
    else:
        data_files = {"train": [p for p, _ in src.train]}
        if src.validation:
            data_files["validation"] = [p for p, _ in src.validation]
        kwargs = {}
        if src.builder == "text":
            # errors="replace": the stdlib has test files in latin-1 and deliberately bad
            # encodings; one odd byte should not stop a run.
            kwargs = {"sample_by": src.sample_by, "encoding_errors": "replace"}
        splits = dict(datasets.load_dataset(src.builder, data_files=data_files,
                                            cache_dir=hf_cache, **kwargs))
        if "validation" not in splits:
            splits = _split_by_document(splits["train"], cfg.val_fraction)
    field = "text" if src.builder == "text" else cfg.text_field
    out = {}
    for name in ("train", "validation"):
        ds = _text_column(splits[name], field)
        if cfg.source != "stdlib" and cfg.max_docs is not None:
            ds = ds.select(range(min(cfg.max_docs, len(ds))))
        out[name] = ds
    return datasets.DatasetDict(out)


def _load_hub(src: CorpusSources, cfg: DataConfig, hf_cache: str) -> dict[str, Dataset]:
    import datasets

    try:
        loaded = datasets.load_dataset(src.name, src.subset, cache_dir=hf_cache)
    except OSError as e:  # ConnectionError (offline), DatasetNotFoundError, HTTP errors
        if datasets.config.HF_HUB_OFFLINE:
            allowed = ("a dataset reachable on the Hugging Face Hub (needs internet; "
                       "HF_HUB_OFFLINE is set) or data.source=text|json|parquet with local files")
        else:
            allowed = ("a dataset reachable on the Hugging Face Hub, "
                       "or data.source=text|json|parquet with local files")
        raise ConfigError("data.name", src.name, allowed,
                          why=f"cannot load it ({type(e).__name__})") from None
    if "train" not in loaded:
        raise ConfigError("data.name", src.name, "a dataset with a train split",
                          why=f"it has splits {sorted(loaded)}")
    if "validation" in loaded:
        return {"train": loaded["train"], "validation": loaded["validation"]}
    _check_val_fraction(cfg)
    return _split_by_document(loaded["train"], cfg.val_fraction)


def _split_by_document(ds: Dataset, val_fraction: float) -> dict[str, Dataset]:
    """The last `val_fraction` of the documents (at least one) become validation."""
    n = len(ds)
    if n < 2:
        raise too_few_documents(n)
    n_val = min(max(1, math.ceil(val_fraction * n)), n - 1)
    return {"train": ds.select(range(n - n_val)), "validation": ds.select(range(n - n_val, n))}


def too_few_documents(n: int) -> ConfigError:
    """One file split by document needs a document on each side."""
    return ConfigError("data.files", n, "at least 2 documents",
                       why="one file with too few documents to split; give more text "
                           "or data.validation_files")


def _text_column(ds: Dataset, field: str) -> Dataset:
    """Keep only the text column, named `text`."""
    if field not in ds.column_names:
        raise ConfigError("data.text_field", field, f"a column of the data: {ds.column_names}",
                          why="no such column")
    ds = ds.select_columns([field])
    return ds if field == "text" else ds.rename_column(field, "text")


def _check_val_fraction(cfg: DataConfig) -> None:
    if not 0.0 < cfg.val_fraction < 1.0:
        raise ConfigError("data.val_fraction", cfg.val_fraction, "0 < val_fraction < 1",
                          why="no validation split without it")
