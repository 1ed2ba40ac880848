"""Tokenizers: byte, a BPE trained offline (deterministic, cached, trained on the training split
only), local tokenizer files; the bytes each token stands for (what val/bpb divides by)."""

from __future__ import annotations

import numpy as np
import pytest

from ablate.config.schema import DataConfig
from ablate.config.validate import tokenizer_vocab_size
from ablate.data.datamodule import LMDataModule
from ablate.data.tokenizer import ByteTokenizer, bpe_tokenizer, bytes_per_token, get_tokenizer
from ablate.errors import ConfigError

TEXTS = [f"def function_{i}(x):\n    return x * {i} + len('héllo wörld')\n" for i in range(200)]


def test_byte_tokenizer_round_trip():
    tok = ByteTokenizer()
    ids = tok.encode("héllo\n")
    assert ids.dtype.name == "uint16" and ids.shape == (7,) and tok.decode(ids) == "héllo\n"
    [(same, n_bytes)] = tok.encode_bytes(["héllo\n"])
    assert np.array_equal(same, ids) and n_bytes.tolist() == [1] * 7


def test_unknown_tokenizer_is_a_config_error():
    assert isinstance(get_tokenizer(DataConfig()), ByteTokenizer)
    with pytest.raises(ConfigError) as err:
        get_tokenizer(DataConfig(tokenizer="gpt2"))
    assert err.value.key == "data.tokenizer" and "no such tokenizer or file" in str(err.value)


def test_bpe_is_deterministic_and_trained_once(tmp_path):
    calls = []

    def texts():
        calls.append(1)
        return iter(TEXTS)

    a = bpe_tokenizer(tmp_path / "a", "corpus", 300, texts)
    b = bpe_tokenizer(tmp_path / "b", "corpus", 300, texts)  # another cache: trained again
    assert a.tok.to_str() == b.tok.to_str() and len(calls) == 2
    again = bpe_tokenizer(tmp_path / "a", "corpus", 300, texts)  # the cache: not retrained
    assert len(calls) == 2 and again.tok.to_str() == a.tok.to_str()
    assert a.vocab_size == 300 and a.name == "bpe-300"
    text = "def function_7(x): return 'héllo wörld — 日本'\n\n"
    ids = a.encode(text)
    assert a.decode(ids) == text and len(ids) < len(text.encode())  # merges compress


def test_bytes_per_token_add_up_to_the_text(tmp_path):
    tok = bpe_tokenizer(tmp_path, "corpus", 300, lambda: iter(TEXTS))
    texts = ["plain ascii text\n\n", "héllo wörld — 日本語 🙂\n\n", "", "  x  "]
    for text, (ids, n_bytes) in zip(texts, tok.encode_bytes(texts)):
        assert n_bytes.sum() == len(text.encode())
        assert len(ids) == len(n_bytes)
    # by hand: a char-offset end per token; the gap before a token goes to it
    assert bytes_per_token("aé b", np.array([1, 2, 4])).tolist() == [1, 2, 2]


def test_local_tokenizer_file_and_directory(tmp_path):
    tok = bpe_tokenizer(tmp_path / "cache", "corpus", 280, lambda: iter(TEXTS))
    folder = tmp_path / "saved"
    folder.mkdir()
    tok.tok.save(str(folder / "tokenizer.json"))
    for value in (str(folder / "tokenizer.json"), str(folder)):
        cfg = DataConfig(tokenizer=value)
        loaded = get_tokenizer(cfg)
        assert loaded.vocab_size == 280 == tokenizer_vocab_size(cfg)
        assert loaded.encode("return x").tolist() == tok.encode("return x").tolist()
        assert loaded.name.startswith("file-")


def test_bpe_is_trained_on_the_training_split_only(tmp_path):
    # the validation document's made-up word would be merged if it were seen
    word = "zqxjzqxjzqxj"
    path = tmp_path / "c.txt"
    path.write_text("\n\n".join(["plain words and more plain words"] * 30 + [word * 40]))
    cfg = DataConfig(source="text", files=[str(path)], val_fraction=0.05, block_size=8,
                     batch_size=1, tokenizer="bpe", vocab_size=300)
    dm = LMDataModule(cfg, tmp_path / "cache")
    dm.prepare_data()
    dm.setup("fit")
    assert dm.vocab_size <= 300
    assert len(dm.tokenizer.encode(word)) == len(word)  # no merge of its letters
    assert len(dm.tokenizer.encode("plain words")) < len("plain words")
    # the validation stream's bytes are its text's (the last documents, the word's among them)
    val_text = dm.tokenizer.decode(dm.val_set.tokens)
    assert val_text.endswith(word * 40 + "\n\n")
    assert int(np.load(dm.token_dir / "validation.bytes.npy").sum()) == len(val_text.encode())


def test_a_sweep_across_tokenizers_is_compared_on_bits_per_byte(ablate_home, tmp_path, capsys):
    """byte vs bpe arms, objective val/loss (per token): every run logs val/bpb, the BPE is
    trained once for the study, and compare says why it reads val/bpb instead."""
    import json

    import yaml

    from ablate.cli import main
    from tests.conftest import TINY
    from tests.mlflow_helpers import all_runs

    spec = {"study": "tok", "repeats": 2,
            "space": {"arm": {"byte": {"data.tokenizer": "byte"},
                              "bpe": {"data.tokenizer": "bpe", "data.vocab_size": 400}}},
            "expect": [{"better": "bpe", "than": "byte"}]}
    path = tmp_path / "tok.yaml"
    path.write_text(yaml.safe_dump(spec))
    assert main(["sweep", str(path), *TINY]) == 0
    runs = [r for r in all_runs(ablate_home) if "ablate.trial" in r.data.tags]
    assert len(runs) == 4
    for r in runs:
        loss, bpb = r.data.metrics["val/loss"], r.data.metrics["val/bpb"]
        if r.data.params["data.tokenizer"] == "byte":  # a token is a byte
            assert abs(bpb - loss / np.log(2)) < 1e-4
        else:  # a token is several bytes
            assert bpb < loss / np.log(2) and int(r.data.params["model.vocab_size"]) <= 400
    assert len(list((ablate_home / "cache" / "tokenizers").glob("bpe-400-*.json"))) == 1
    capsys.readouterr()
    assert main(["compare", "--study", "tok"]) == 0
    out = capsys.readouterr().out
    assert "compared on val/bpb" in out and "2 tokenizers (" in out
    assert main(["compare", "--study", "tok", "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["metric"] == "val/bpb" and "tokenizers" in doc["metric_note"]
    assert doc["expectations"][0]["metric"] == "val/bpb"
    assert main(["compare", "--study", "tok", "--metric", "val/loss"]) == 0  # asked: kept
    assert "warning: the runs used 2 tokenizers" in capsys.readouterr().out
