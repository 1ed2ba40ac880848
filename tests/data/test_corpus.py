"""Corpus resolution: the stdlib default, local files, errors as one-line ConfigErrors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ablate.config.schema import DataConfig
from ablate.data.corpus import corpus_fingerprint, load_corpus, resolve_sources
from ablate.errors import ConfigError

STDLIB = DataConfig(source="stdlib", max_docs=40, val_fraction=0.1)


def _names(files):
    return [rel for _, rel in files]


def test_stdlib_split_is_deterministic_disjoint_and_nonempty():
    a, b = resolve_sources(STDLIB), resolve_sources(STDLIB)
    assert a == b
    train, val = _names(a.train), _names(a.validation)
    assert train and val and not set(train) & set(val)
    assert len(train) + len(val) == 40
    assert all(rel.endswith(".py") and "site-packages" not in rel for rel in train + val)
    assert a.builder == "text" and a.sample_by == "document"


def test_stdlib_loads_one_document_per_file(tmp_path):
    cfg = DataConfig(source="stdlib", max_docs=6, val_fraction=0.3)
    src = resolve_sources(cfg)
    corpus = load_corpus(cfg, tmp_path)
    assert len(corpus["train"]) == len(src.train)
    assert len(corpus["validation"]) == len(src.validation)
    first_path = src.train[0][0]
    with open(first_path, encoding="utf-8", errors="replace", newline=None) as f:
        assert corpus["train"][0]["text"] == f.read()


def test_single_text_file_is_split_by_paragraph(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("\n\n".join(f"paragraph {i}\nsecond line" for i in range(10)))
    corpus = load_corpus(DataConfig(source="text", files=[str(path)], val_fraction=0.2), tmp_path)
    assert len(corpus["train"]) == 8 and len(corpus["validation"]) == 2
    assert corpus["validation"][1]["text"] == "paragraph 9\nsecond line"


def test_json_text_field_is_renamed_to_text(tmp_path):
    path = tmp_path / "docs.jsonl"
    path.write_text("".join(json.dumps({"body": f"doc {i}", "id": i}) + "\n" for i in range(5)))
    cfg = DataConfig(source="json", files=[str(path)], text_field="body", val_fraction=0.2)
    corpus = load_corpus(cfg, tmp_path)
    assert corpus["train"].column_names == ["text"] and len(corpus["validation"]) == 1
    with pytest.raises(ConfigError) as err:
        load_corpus(DataConfig(source="json", files=[str(path)], text_field="nope"), tmp_path)
    assert err.value.key == "data.text_field"


def test_glob_of_files_is_split_by_file(tmp_path):
    for i in range(12):
        (tmp_path / f"part{i:02d}.txt").write_text(f"text {i}")
    src = resolve_sources(DataConfig(source="text", files=[str(tmp_path / "*.txt")]))
    assert src.train and src.validation
    names = sorted(_names(src.train) + _names(src.validation))
    assert names == [f"part{i:02d}.txt" for i in range(12)]


def test_missing_file_names_data_files(tmp_path):
    with pytest.raises(ConfigError) as err:
        resolve_sources(DataConfig(source="text", files=[str(tmp_path / "nothing*.txt")]))
    assert err.value.key == "data.files" and "\n" not in str(err.value)


def test_unknown_source_names_data_source():
    with pytest.raises(ConfigError) as err:
        resolve_sources(DataConfig(source="csv"))
    assert err.value.key == "data.source"


def test_fingerprint_tracks_inputs(tmp_path):
    assert corpus_fingerprint(STDLIB) == corpus_fingerprint(DataConfig(**vars(STDLIB)))
    other = DataConfig(source="stdlib", max_docs=41, val_fraction=0.1)
    assert corpus_fingerprint(STDLIB) != corpus_fingerprint(other)
    path = tmp_path / "a.txt"
    path.write_text("one\n\ntwo")
    cfg = DataConfig(source="text", files=[str(path)])
    before = corpus_fingerprint(cfg)
    path.write_text("one\n\ntwo, longer")
    assert corpus_fingerprint(cfg) != before


def test_hub_offline_is_a_one_line_config_error(tmp_path, monkeypatch):
    # datasets reads HF_HUB_OFFLINE at import: only a fresh interpreter sees it.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    code = (
        "import sys\n"
        "from ablate.config.schema import DataConfig\n"
        "from ablate.data.corpus import load_corpus\n"
        "from ablate.errors import ConfigError\n"
        "try:\n"
        "    cfg = DataConfig(source='hub', name='someone/no-such-dataset')\n"
        f"    load_corpus(cfg, {str(tmp_path)!r})\n"
        "except ConfigError as e:\n"
        "    print(e.key); print(e); sys.exit(0)\n"
        "sys.exit(1)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    key, message = out.stdout.strip().splitlines()
    assert key == "data.name" and "HF_HUB_OFFLINE" in message
    assert "Traceback" not in out.stderr
