"""Data files checked before anything exists: no cache, no store, no run.

`check_data(cfg)` finds the files the way the loader will (`resolve_sources`: glob and
stat) and sniffs the first `SNIFF_BYTES` of each: readable, not empty, text (not binary)
for `data.source=text|json`, JSON lines (or one JSON document) for `json`, a Parquet file
with the `data.text_field` column for `parquet`. Without it a bad file surfaces minutes
later inside `datasets`, as a traceback, after the cache and the MLflow run were created.
The corpus is never read whole: a file can only be refused for what its first KBs show.
"""

from __future__ import annotations

import bz2
import gzip
import json
import lzma
import os

from ablate.config.schema import DataConfig
from ablate.data.corpus import resolve_sources, too_few_documents
from ablate.errors import ConfigError

SNIFF_BYTES = 16 * 1024
# compressed files `datasets` opens transparently: sniffed through the stdlib decoders
_DECOMPRESSORS = {b"\x1f\x8b": gzip.open, b"BZh": bz2.open, b"\xfd7zXZ\x00": lzma.open}
_OPAQUE = (b"PK\x03\x04", b"\x28\xb5\x2f\xfd")  # zip, zstd: not sniffed (no stdlib decoder)
_CONTROL = bytes(set(range(32)) - set(b"\t\n\v\f\r\x1b")) + b"\x7f"  # not in any text
_BINARY_SHARE = 0.1  # more control bytes than this in the head (or a NUL): binary
_UNDECODABLE_SHARE = 0.5  # more than this not UTF-8: every character would become U+FFFD


def check_data(cfg: DataConfig) -> None:
    """Raise one ConfigError for the first data file the run could not read."""
    src = resolve_sources(cfg)  # files exist (the same globs the loader expands)
    if cfg.source in ("stdlib", "hub"):  # the running Python's own files; the network
        return
    val_key = "data.validation_files" if cfg.validation_files else "data.files"
    for key, files in (("data.files", src.train), (val_key, src.validation)):
        for path, _ in files:
            body = check_file(path, cfg.source, cfg.text_field, key)
            if not src.validation and body is not None:  # one file, split by document
                n = _documents(body, cfg.source)
                if n is not None and n < 2:
                    raise too_few_documents(n)


def check_file(path: str, fmt: str, text_field: str, key: str) -> str | None:
    """One file against its format: text | json | parquet. -> its text when the sniff
    read all of it (a small file), else None."""
    if not os.access(path, os.R_OK):
        raise ConfigError(key, path, "readable files", "permission denied")
    if os.path.getsize(path) == 0:
        raise ConfigError(key, path, "files with text in them", "empty file")
    if fmt == "parquet":
        _check_parquet(path, text_field, key)
        return None
    head, complete = _head(path, key)
    if head is None:  # an archive format without a stdlib decoder: `datasets` will tell
        return None
    body = _decode(head, complete, path, key, strict=fmt == "json")
    if complete and not body.strip():
        raise ConfigError(key, path, "files with text in them", "only whitespace")
    if fmt == "json":
        _check_json(body, complete, path, text_field, key)
    return body if complete else None


def _documents(body: str, fmt: str) -> int | None:
    """Documents in a whole small file, counted as `datasets` splits it: paragraphs of a
    text file, records of JSON lines or of a JSON list (None: cannot tell)."""
    if fmt == "text":
        return sum(1 for p in body.split("\n\n") if p)
    whole = _parse(body)
    if isinstance(whole, list):
        return len(whole)
    if whole is not None:  # one object: a single record, or a dict of columns
        return None if any(isinstance(v, list) for v in whole.values()) else 1
    return sum(1 for line in body.splitlines() if line.strip())


def _head(path: str, key: str) -> tuple[bytes | None, bool]:
    """(the first SNIFF_BYTES of the content, decompressed; whether that is all of it)."""
    try:
        with open(path, "rb") as f:
            magic = f.read(8)
            if magic.startswith(_OPAQUE):
                return None, False
            opener = next((op for sig, op in _DECOMPRESSORS.items() if magic.startswith(sig)), None)
            if opener is None:
                f.seek(0)
                head = f.read(SNIFF_BYTES + 1)
            else:
                with opener(path, "rb") as z:
                    head = z.read(SNIFF_BYTES + 1)
    except PermissionError:
        raise ConfigError(key, path, "readable files", "permission denied") from None
    except (OSError, EOFError, lzma.LZMAError) as e:
        raise ConfigError(key, path, "readable files",
                          f"cannot read it ({type(e).__name__})") from None
    return head[:SNIFF_BYTES], len(head) <= SNIFF_BYTES


def _decode(head: bytes, complete: bool, path: str, key: str, strict: bool) -> str:
    """The head as text. Binary data (a NUL, many control bytes) is refused; so is text
    that is mostly not UTF-8. The text builder replaces a few odd bytes (a latin-1 file
    is fine), JSON must be UTF-8."""
    controls = sum(head.count(c) for c in _CONTROL)
    if b"\x00" in head or controls > _BINARY_SHARE * len(head):
        raise ConfigError(key, path, "text files", "binary data, not text")
    if not complete:  # the head may end inside a multi-byte character
        head = head[: len(head) - _cut_tail(head)]
    text = head.decode("utf-8", errors="replace")
    bad = text.count("\ufffd") - head.decode("utf-8", errors="ignore").count("\ufffd")
    if strict and bad:
        raise ConfigError(key, path, "UTF-8 JSON files", "not UTF-8")
    if bad > _UNDECODABLE_SHARE * max(1, len(text)):
        raise ConfigError(key, path, "UTF-8 text files", "mostly not UTF-8 (every odd byte "
                          "would be read as U+FFFD)")
    return text.removeprefix("\ufeff")


def _cut_tail(head: bytes) -> int:
    """Bytes of an unfinished UTF-8 character at the end of `head` (0..3)."""
    for n in range(1, min(4, len(head)) + 1):
        if head[-n] & 0xC0 != 0x80:  # a lead byte (or ASCII): unfinished if it wants more
            return n if _char_len(head[-n]) > n else 0
    return 0


def _char_len(lead: int) -> int:
    """Bytes of the UTF-8 character that starts with byte `lead`."""
    for n, mask, value in ((2, 0xE0, 0xC0), (3, 0xF0, 0xE0), (4, 0xF8, 0xF0)):
        if lead & mask == value:
            return n
    return 1


def _check_json(body: str, complete: bool, path: str, text_field: str, key: str) -> None:
    """JSON lines (one object per line), or one JSON document, as `datasets` reads them."""
    start = body.lstrip()
    if start[:1] not in ("{", "["):
        raise ConfigError(key, path, "JSON lines or a JSON document for data.source=json",
                          "not JSON (it starts with neither { nor [)")
    lines = body.splitlines()
    whole = lines if complete else lines[:-1]  # the last line may be cut by the sniff
    first = next((i for i, ln in enumerate(whole) if ln.strip()), None)
    record = _parse(whole[first]) if first is not None else None
    if not isinstance(record, dict):  # not JSON lines: one document (maybe pretty-printed)
        if complete and _parse(body) is None:
            raise ConfigError(key, path, "JSON lines or a JSON document", "invalid JSON")
        return
    for n, line in enumerate(whole, 1):
        if line.strip() and not isinstance(_parse(line), dict):
            raise ConfigError(key, path, "one JSON object per line", f"invalid JSON on line {n}")
    if text_field not in record:
        raise ConfigError("data.text_field", text_field,
                          f"a key of the records: {', '.join(record)}",
                          f"not in the first record of {path}")


def _parse(text: str):
    try:
        return json.loads(text)
    except ValueError:
        return None


def _check_parquet(path: str, text_field: str, key: str) -> None:
    """The magic bytes at both ends, then the footer's schema (the data is not read)."""
    try:
        with open(path, "rb") as f:
            head = f.read(4)
            f.seek(max(0, os.path.getsize(path) - 4))
            tail = f.read(4)
    except PermissionError:
        raise ConfigError(key, path, "readable files", "permission denied") from None
    if head != b"PAR1" or tail != b"PAR1":
        raise ConfigError(key, path, "Parquet files for data.source=parquet", "not a Parquet file")
    import pyarrow.parquet as pq

    try:
        names = pq.read_schema(path).names
    except Exception as e:  # noqa: BLE001 - pyarrow's errors for a corrupt footer vary
        raise ConfigError(key, path, "Parquet files for data.source=parquet",
                          f"unreadable Parquet ({type(e).__name__})") from None
    if text_field not in names:
        raise ConfigError("data.text_field", text_field,
                          f"a column of the data: {', '.join(names)}",
                          f"not a column of {path}")
