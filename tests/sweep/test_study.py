"""Samplers and pruners from the sweep file's names: every one builds, silently (they are
built before the sweep's terminal is quietened, and Optuna calls several "experimental")."""

import warnings

import pytest

from ablate.sweep.study import make_pruner, make_sampler

SAMPLERS = ["tpe", "random", "gp", "cmaes", "nsga2", "bruteforce", "grid"]
PRUNERS = ["none", "median", "hyperband", "successive_halving", "wilcoxon", "threshold", "patient"]


@pytest.mark.parametrize("name", SAMPLERS)
def test_every_sampler_builds_without_a_warning(name):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sampler = make_sampler({"name": name, "options": {}, "seed": 0}, n_objectives=1)
    assert type(sampler).__module__.startswith("optuna.samplers")


@pytest.mark.parametrize("name", PRUNERS)
def test_every_pruner_builds_without_a_warning(name):
    opts = {"upper": 8.0} if name == "threshold" else {}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pruner = make_pruner({"name": name, "options": opts})
    assert type(pruner).__module__.startswith("optuna.pruners")
