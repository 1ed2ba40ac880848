"""LMDataModule: blocks have the right shapes, the token cache is reused, order is seeded."""

from __future__ import annotations

import json

import pytest
import torch

from ablate.config.schema import DataConfig
from ablate.data import datamodule as dm_module
from ablate.data.datamodule import LMDataModule
from ablate.errors import ConfigError

B, BATCH = 32, 4


def _text_file(tmp_path):
    path = tmp_path / "story.txt"
    path.write_text("\n\n".join(f"Paragraph {i}: " + "lorem ipsum dolor sit amet. " * 8
                                for i in range(40)))
    return path


def _ready(cfg, tmp_path, seed=0):
    dm = LMDataModule(cfg, tmp_path / "cache", seed=seed)
    dm.prepare_data()
    dm.setup("fit")
    return dm


def _check_batches(dm):
    for loader in (dm.train_dataloader(), dm.val_dataloader()):
        x, y = next(iter(loader))[:2]
        assert x.shape == y.shape == (BATCH, B) and x.dtype == y.dtype == torch.int64
        # y is x shifted left by one: block i's window is tokens[i*B : i*B+B+1].
        assert torch.equal(x[:, 1:], y[:, :-1])
        assert int(x.max()) < dm.vocab_size


def test_text_file_trains(tmp_path):
    cfg = DataConfig(source="text", files=[str(_text_file(tmp_path))], val_fraction=0.25,
                     block_size=B, batch_size=BATCH)
    dm = _ready(cfg, tmp_path)
    _check_batches(dm)
    assert dm.tokens_per_batch == BATCH * B and dm.vocab_size == 256
    # 40 paragraphs: the last 10 are validation; each is followed by "\n\n" (2 bytes).
    paragraphs = _text_file(tmp_path).read_text().split("\n\n")
    assert dm.n_train_tokens == sum(len(p) + 2 for p in paragraphs[:30])
    assert dm.n_val_tokens == sum(len(p) + 2 for p in paragraphs[30:])
    # The stream is the documents in order, each followed by "\n\n".
    assert dm.tokenizer.decode(dm.train_set.tokens[:13]) == "Paragraph 0: "


def test_json_file_trains(tmp_path):
    path = tmp_path / "docs.jsonl"
    path.write_text("".join(json.dumps({"text": f"document {i} " * 20}) + "\n" for i in range(30)))
    cfg = DataConfig(source="json", files=[str(path)], val_fraction=0.3, block_size=B,
                     batch_size=BATCH)
    _check_batches(_ready(cfg, tmp_path))


def test_stdlib_trains(tmp_path):
    cfg = DataConfig(source="stdlib", max_docs=40, val_fraction=0.1, block_size=B,
                     batch_size=BATCH)
    dm = _ready(cfg, tmp_path)
    _check_batches(dm)
    meta = json.loads((dm.token_dir / "meta.json").read_text())
    assert meta["train"]["n_tokens"] == dm.n_train_tokens


def test_cache_is_reused(tmp_path, monkeypatch):
    cfg = DataConfig(source="text", files=[str(_text_file(tmp_path))], val_fraction=0.25,
                     block_size=B, batch_size=BATCH)
    dm = _ready(cfg, tmp_path)
    files = [dm.token_dir / f"{s}.npy" for s in ("train", "validation")]
    mtimes = [f.stat().st_mtime_ns for f in files]

    def no_loading(*args, **kwargs):
        raise AssertionError("prepare_data loaded the corpus again")

    monkeypatch.setattr(dm_module, "load_corpus", no_loading)
    again = _ready(cfg, tmp_path)
    assert again.fingerprint == dm.fingerprint
    assert [f.stat().st_mtime_ns for f in files] == mtimes


def test_fingerprint_changes_with_block_size_and_max_docs(tmp_path):
    base = DataConfig(source="stdlib", max_docs=40)
    fp = LMDataModule(base, tmp_path).fingerprint
    assert LMDataModule(DataConfig(source="stdlib", max_docs=40), tmp_path).fingerprint == fp
    for changed in (dict(max_docs=40, block_size=64), dict(max_docs=39)):
        assert LMDataModule(DataConfig(source="stdlib", **changed), tmp_path).fingerprint != fp


def test_train_order_is_seeded(tmp_path):
    cfg = DataConfig(source="text", files=[str(_text_file(tmp_path))], val_fraction=0.25,
                     block_size=B, batch_size=BATCH)

    def first_batches(seed):
        return torch.cat([x for x, _ in _ready(cfg, tmp_path, seed).train_dataloader()][:5])

    assert torch.equal(first_batches(0), first_batches(0))
    assert not torch.equal(first_batches(0), first_batches(1))


def test_block_size_too_large_for_validation(tmp_path):
    cfg = DataConfig(source="text", files=[str(_text_file(tmp_path))], val_fraction=0.05,
                     block_size=4096, batch_size=1)
    dm = LMDataModule(cfg, tmp_path / "cache")
    dm.prepare_data()
    with pytest.raises(ConfigError) as err:
        dm.setup("fit")
    assert err.value.key == "data.block_size" and "validation split has only" in str(err.value)


def test_missing_file_and_unknown_source(tmp_path):
    with pytest.raises(ConfigError) as err:
        missing = DataConfig(source="text", files=[str(tmp_path / "no.txt")])
        LMDataModule(missing, tmp_path).prepare_data()
    assert err.value.key == "data.files"
    with pytest.raises(ConfigError) as err:
        LMDataModule(DataConfig(source="ftp"), tmp_path).prepare_data()
    assert err.value.key == "data.source"
