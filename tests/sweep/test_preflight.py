"""Sweep pre-flight: mistakes a sweep file or its overrides can make stop before anything
exists (no study, no parent run, no cache: ABLATE_HOME is never made), with one line on
stderr and exit code 2. A stored study is never changed silently either."""

from __future__ import annotations

import pytest
import yaml

from ablate.cli import main
from tests.mlflow_helpers import all_runs

BASE = {"study": "s", "space": {"optim.lr": [0.001, 0.002]}}


def _spec(**kw):
    return {**BASE, **kw}


CASES = [
    ("override-of-a-swept-key", _spec(), ["optim.lr=0.01"], "optim.lr"),
    ("override-of-an-arm-key", _spec(space={"arm": {"a": {"model.moe.top_k": 1}, "b": {}}}),
     ["model.moe.top_k=2"], "model.moe.top_k"),
    ("override-of-a-parent-key", _spec(space={"model.moe.top_k": [1, 2]}), ["model.moe={}"],
     "model.moe"),
    ("objective-typo", _spec(objective={"metric": "val/los"}), [], "val/los"),
    ("objective-unknown-family", _spec(objective={"metric": "moe/l0/nonsense"}), [],
     "moe/l0/nonsense"),
    ("objective-moe-metric-of-a-dense-arm",
     _spec(space={"arm": {"d": {"model.ffn": "dense"}, "m": {"model.ffn": "moe"}}},
           objective={"metric": "moe/load_cv"}), [], "moe/load_cv"),
    ("objective-mtp-depth-not-in-every-arm",
     _spec(space={"arm": {"plain": {}, "mtp": {"model.mtp.depth": 1}}},
           objective={"metric": "train/mtp/d1"}),
     [], "train/mtp/d1"),
    ("grid-on-a-continuous-range",
     _spec(space={"optim.lr": {"type": "float", "low": 0.001, "high": 0.01}},
           sampler={"name": "grid"}),
     [], "sampler.name"),
    ("bruteforce-on-a-continuous-range",
     _spec(space={"optim.lr": {"type": "float", "low": 0.001, "high": 0.01}},
           sampler={"name": "bruteforce"}), [], "space.optim.lr"),
    ("log-with-step", _spec(space={"optim.lr": {"type": "float", "low": 0.001, "high": 0.01,
                                                "log": True, "step": 0.001}}), [],
     "space.optim.lr.step"),
    ("range-off-its-step-grid",
     _spec(space={"optim.warmup_steps": {"type": "int", "low": 0, "high": 9,
                                         "step": 4}}), [], "space.optim.warmup_steps.high"),
    ("int-range-with-an-invalid-interior",  # 3 does not divide d_model=32 (tiny)
     _spec(space={"model.n_heads": {"type": "int", "low": 2, "high": 4}}), [], "model.n_heads"),
    ("float-range-with-a-nan-end", _spec(space={"optim.lr": {"type": "float", "low": float("nan"),
                                                             "high": 0.1}}), [],
     "space.optim.lr.low"),
    ("repeated-choice", _spec(space={"optim.lr": [0.001, 0.001]}), [], "space.optim.lr"),
    ("gpus-on-a-machine-without-them", _spec(), ["--gpus", "0"], "trainer.accelerator"),
    ("missing-data-files", _spec(), ["data.source=text", "data.files=[/nonexistent/*.txt]"],
     "data.files"),
    ("arm-with-missing-data-files",
     _spec(space={"arm": {"ok": {},
                          "other": {"data.source": "text", "data.files": ["/nope/x.txt"]}}}),
     [], "data.files"),
    ("expect-unknown-arm", _spec(space={"arm": {"a": {}, "b": {"optim.lr": 0.002}}},
                                 expect=[{"better": "c", "than": "a"}]), [], "expect[0].better"),
    ("expect-unknown-metric", _spec(space={"arm": {"a": {}, "b": {"optim.lr": 0.002}}},
                                    expect=[{"better": "b", "than": "a", "metric": "val/acc"}]),
     [], "expect[0].metric"),
    ("expect-bad-aggregate", _spec(space={"arm": {"a": {}, "b": {"optim.lr": 0.002}}},
                                   expect=[{"lower": "b", "than": "a", "metric": "top:val/loss"}]),
     [], "expect[0].metric"),
    ("expect-no-relation",
     _spec(space={"arm": {"a": {}, "b": {}}}, expect=[{"beats": "b", "than": "a"}]),
     [], "expect[0].beats"),
    ("expect-two-relations", _spec(space={"arm": {"a": {}, "b": {}}},
                                   expect=[{"better": "b", "lower": "b", "than": "a"}]), [],
     "expect[0]"),
    ("expect-similar-without-margin", _spec(space={"arm": {"a": {}, "b": {}}},
                                            expect=[{"similar": "b", "to": "a"}]), [],
     "expect[0].margin"),
    ("expect-margin-on-better", _spec(space={"arm": {"a": {}, "b": {}}},
                                      expect=[{"better": "b", "than": "a", "margin": 0.1}]), [],
     "expect[0].margin"),
    ("expect-than-with-similar", _spec(space={"arm": {"a": {}, "b": {}}},
                                       expect=[{"similar": "b", "than": "a", "margin": 0.1}]), [],
     "expect[0].than"),
    ("expect-same-arm",
     _spec(space={"arm": {"a": {}, "b": {}}}, expect=[{"better": "a", "than": "a"}]),
     [], "expect[0].than"),
    ("expect-without-arms", _spec(expect=[{"better": "x", "than": "y"}]), [], "expect[0]"),
    ("expect-not-a-list", _spec(space={"arm": {"a": {}, "b": {}}}, expect={"better": "b"}), [],
     "expect"),
    ("range-unknown-option", _spec(space={"optim.lr": {"type": "float", "low": 0.001, "high": 0.01,
                                                       "lg": True}}), [], "space.optim.lr.lg"),
]


def _cases():
    import torch

    for c in CASES:
        gpu = c[0].startswith("gpus-") and torch.cuda.is_available()
        yield pytest.param(*c[1:], id=c[0],
                           marks=[pytest.mark.skip("this machine has a GPU")] if gpu else [])


@pytest.mark.parametrize("spec, overrides, names", list(_cases()))
def test_preflight_one_line_exit_2_nothing_created(spec, overrides, names, ablate_home, tiny,
                                                   tmp_path, capsys):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(spec))
    assert main(["sweep", str(path), *tiny, *overrides]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and names in err[0], err
    assert not ablate_home.exists()


def test_a_changed_direction_is_refused_before_anything_runs(ablate_home, tiny, tmp_path, capsys):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(_spec(space={"optim.lr": [0.002]})))
    assert main(["sweep", str(path), *tiny]) == 0
    runs = len(all_runs(ablate_home))
    path.write_text(yaml.safe_dump(_spec(space={"optim.lr": [0.002]},
                                         objective={"metric": "val/loss",
                                                    "direction": "maximize"})))
    capsys.readouterr()
    assert main(["sweep", str(path), *tiny]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "objective.direction" in err[0], err
    assert len(all_runs(ablate_home)) == runs  # no new parent run, no trial
