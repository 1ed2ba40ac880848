"""check_data: every file the run will read is sniffed before any cache exists; good files
of every format pass, bad ones are one ConfigError naming the key and the file."""

from __future__ import annotations

import bz2
import gzip
import json

import pytest

from ablate.config.schema import DataConfig
from ablate.data.checks import SNIFF_BYTES, check_data
from ablate.errors import ConfigError

TWO_DOCS = "first paragraph\nof text\n\nsecond paragraph\n"


def _cfg(source: str, *files, **kw) -> DataConfig:
    return DataConfig(source=source, files=[str(f) for f in files], **kw)


def _write(path, content):
    (path.write_bytes if isinstance(content, bytes) else path.write_text)(content)
    return path


def _parquet(path, columns: dict):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table(columns), path)
    return path


# -- good files pass --------------------------------------------------------------------------
def test_the_default_corpus_passes():
    check_data(DataConfig())
    check_data(DataConfig(max_docs=30))


@pytest.mark.parametrize("name, content", [
    ("a.txt", TWO_DOCS),
    ("latin1.txt", "caf\xe9 cr\xe8me\n\nna\xefve\n".encode("latin-1")),  # the text builder replaces
    ("a.txt.gz", gzip.compress(TWO_DOCS.encode())),
    ("a.txt.bz2", bz2.compress(TWO_DOCS.encode())),
    ("big.txt", ("é" * 7 + "\n\n") * (SNIFF_BYTES // 4)),  # the sniff ends inside a character
])
def test_good_text_files_pass(tmp_path, name, content):
    check_data(_cfg("text", _write(tmp_path / name, content)))


@pytest.mark.parametrize("content", [
    '{"text": "a"}\n{"text": "b"}\n',
    '\ufeff{"text": "a"}\n\n{"text": "b"}\n',  # BOM, blank line
    json.dumps([{"text": "a"}, {"text": "b"}], indent=2),  # one pretty-printed document
    '[{"text": "a"}, {"text": "b"}]',
    # longer than the sniff
    "".join(json.dumps({"text": "x" * 100, "i": i}) + "\n" for i in range(400)),
    # 111-byte lines of two-byte characters: the sniff ends inside one (byte 66 of line 148)
    "".join(json.dumps({"text": "é" * 49}, ensure_ascii=False) + "\n" for _ in range(400)),
])
def test_good_json_files_pass(tmp_path, content):
    check_data(_cfg("json", _write(tmp_path / "a.json", content)))


def test_a_json_text_field_other_than_text(tmp_path):
    f = _write(tmp_path / "a.jsonl", '{"body": "a"}\n{"body": "b"}\n')
    check_data(_cfg("json", f, text_field="body"))
    with pytest.raises(ConfigError) as e:
        check_data(_cfg("json", f))
    assert e.value.key == "data.text_field" and "body" in str(e.value)


def test_a_parquet_file_passes_and_its_columns_are_read_from_the_footer(tmp_path):
    f = _parquet(tmp_path / "a.parquet", {"text": ["a", "b"], "n": [1, 2]})
    check_data(_cfg("parquet", f))
    with pytest.raises(ConfigError) as e:
        check_data(_cfg("parquet", f, text_field="body"))
    assert e.value.key == "data.text_field" and "text, n" in str(e.value)


def test_only_the_head_is_read(tmp_path):
    """A file is judged by its first SNIFF_BYTES: what lies beyond is `datasets`' business
    (the corpus is never read whole before the run)."""
    f = _write(tmp_path / "a.txt", TWO_DOCS.encode() * (SNIFF_BYTES // len(TWO_DOCS) + 10)
               + b"\x00" * 1000)
    check_data(_cfg("text", f))


# -- bad files: one ConfigError naming the key and the file ----------------------------------
@pytest.mark.parametrize("source, name, content, why", [
    ("text", "a.txt", "", "empty file"),
    ("text", "a.txt", " \n\n\t ", "only whitespace"),
    ("text", "a.bin", bytes(range(256)) * 4, "binary data"),
    ("text", "a.txt", b"\x01\x02\x03 abc \x04" * 200, "binary data"),  # control bytes, no NUL
    ("text", "a.txt", b"\xff\xfe\xfa\xfb" * 500, "mostly not UTF-8"),
    ("text", "a.gz", gzip.compress(b"") , "only whitespace"),
    ("text", "a.gz", b"\x1f\x8b\x08\x00broken", "cannot read it"),
    ("json", "a.json", "plain words\n", "not JSON"),
    ("json", "a.jsonl", '{"text": "a"}\n{"text": \n{"text": "c"}\n', "invalid JSON on line 2"),
    ("json", "a.jsonl", '{"text": "a"}\n[1, 2]\n', "invalid JSON on line 2"),
    ("json", "a.json", '[{"text": "a"},\n {"text": ', "invalid JSON"),
    ("json", "a.jsonl", '{"text": "caf\xe9"}\n{"text": "b"}\n'.encode("latin-1"), "not UTF-8"),
    ("parquet", "a.parquet", "text, not parquet\n", "not a Parquet file"),
    ("parquet", "a.parquet", b"PAR1" + b"\x00" * 64 + b"PAR1", "unreadable Parquet"),
])
def test_bad_files_are_refused(tmp_path, source, name, content, why):
    f = _write(tmp_path / name, content)
    with pytest.raises(ConfigError) as e:
        check_data(_cfg(source, f))
    assert (e.value.key == "data.files" and e.value.value == str(f)
            and why in e.value.why), str(e.value)


def test_a_bad_validation_file_is_named_as_such(tmp_path):
    train = _write(tmp_path / "a.txt", TWO_DOCS)
    val = _write(tmp_path / "v.txt", "")
    with pytest.raises(ConfigError) as e:
        check_data(_cfg("text", train, validation_files=[str(val)]))
    assert e.value.key == "data.validation_files" and e.value.value == str(val)


def test_every_file_of_a_glob_is_sniffed(tmp_path):
    for i in range(3):
        _write(tmp_path / f"{i}.txt", TWO_DOCS)
    _write(tmp_path / "3.txt", b"\x00\x01" * 50)
    with pytest.raises(ConfigError) as e:
        check_data(_cfg("text", tmp_path / "*.txt"))
    assert e.value.value == str(tmp_path / "3.txt")


@pytest.mark.parametrize("source, content", [("text", "one paragraph only\n"),
                                             ("json", '{"text": "one record"}\n'),
                                             ("json", '[{"text": "one record"}]')])
def test_one_small_file_needs_two_documents_to_split(tmp_path, source, content):
    f = _write(tmp_path / "a.txt", content)
    with pytest.raises(ConfigError, match="at least 2 documents"):
        check_data(_cfg(source, f))
    check_data(_cfg(source, f, validation_files=[str(f)]))  # an explicit validation file: no split


def test_a_directory_given_as_a_file(tmp_path):
    (tmp_path / "corpus").mkdir()
    with pytest.raises(ConfigError) as e:
        check_data(_cfg("text", tmp_path / "corpus"))
    assert e.value.key == "data.files" and "a directory" in e.value.why


def test_an_unreadable_file(tmp_path):
    import os

    if os.geteuid() == 0:
        pytest.skip("root reads through chmod 000: the case cannot be simulated")
    f = _write(tmp_path / "a.txt", TWO_DOCS)
    f.chmod(0)
    with pytest.raises(ConfigError, match="permission denied"):
        check_data(_cfg("text", f))
