"""Every config key declares its domain next to its field, and one validator enforces it.

The walk over the dataclasses makes a new field without a domain fail here, and checks
the declared domains through `load_config`, the road every run and every trial takes.
"""

from __future__ import annotations

import dataclasses

import pytest

from ablate.config.domains import (
    OneOf,
    Range,
    Weights,
    check_domains,
    check_value,
    domain_of,
    field_types,
)
from ablate.config.load import load_config, read_yaml
from ablate.config.schema import RunConfig
from ablate.config.validate import validate
from ablate.errors import ConfigError
from ablate.models.moe.routers import ComposedRouterConfig
from ablate.registry import ROUTERS

ROUTER = "model.moe.router."


def _tree(cls: type, prefix: str = "") -> list[tuple[str, type, str]]:
    """(dotted key, dataclass, field) for every leaf field of the RunConfig tree; the router's
    keys are those of ComposedRouterConfig (every built-in router is a ComposedRouterConfig)."""
    out = []
    for f in dataclasses.fields(cls):
        kind, _ = field_types(cls)[f.name]
        if f"{prefix}{f.name}." == ROUTER:
            out += _tree(ComposedRouterConfig, ROUTER)
        elif dataclasses.is_dataclass(kind):
            out += _tree(kind, f"{prefix}{f.name}.")
        else:
            out.append((f"{prefix}{f.name}", cls, f.name))
    return out


KEYS = _tree(RunConfig)
BUILTIN_ROUTER_CONFIGS = sorted({ROUTERS.get(n).config for n in ROUTERS.names()
                                 if ROUTERS.get(n).config.__module__.startswith("ablate.")},
                                key=lambda c: c.__name__)


def _kind(cls: type, name: str) -> type:
    return field_types(cls)[name][0]


def _declared(kinds: tuple) -> list[tuple[str, type, str]]:
    return [k for k in KEYS if _kind(k[1], k[2]) in kinds]


FLOAT_KEYS = ([key for key, cls, name in _declared((float,))]
              + ["model.moe.aux.switch", "model.moe.aux.z"])
ENUM_KEYS = [(key, domain_of(cls, name)) for key, cls, name in _declared((str,))
             if isinstance(domain_of(cls, name), OneOf)]
RANGES = [(key, domain_of(cls, name), _kind(cls, name) is int)
          for key, cls, name in _declared((int, float))]


def test_the_walk_sees_every_section_and_the_router():
    sections = {key.rsplit(".", 1)[0] for key, _, _ in KEYS}
    assert {"data", "model", "model.moe", "model.moe.router", "optim", "trainer", "tracking",
            "budget", "init"} <= sections
    assert len(FLOAT_KEYS) > 20 and len(ENUM_KEYS) > 15


@pytest.mark.parametrize("cls", [RunConfig, ComposedRouterConfig, *BUILTIN_ROUTER_CONFIGS],
                         ids=lambda c: c.__name__)
def test_every_number_and_string_field_declares_its_domain(cls):
    """A new numeric or string key without a domain fails here (a subclass that only
    changes a default keeps its base class's domain)."""
    classes, todo = [], [cls]
    while todo:
        c = todo.pop()
        classes.append(c)
        todo += [k for k, _ in field_types(c).values() if dataclasses.is_dataclass(k)]
    missing = [f"{c.__name__}.{name}" for c in classes for name, (kind, _) in field_types(c).items()
               if kind in (int, float, str) and domain_of(c, name) is None]
    assert not missing, f"fields without a declared domain: {missing}"
    assert isinstance(domain_of(RunConfig().model.moe.__class__, "aux"), Weights)


@pytest.mark.parametrize("key", FLOAT_KEYS)
@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_nan_and_inf_are_refused_for_every_float_key(key, value):
    with pytest.raises(ConfigError) as e:
        load_config(overrides=[f"{key}={value}"])
    assert e.value.key == key and e.value.why == "not a finite number", str(e.value)


@pytest.mark.parametrize("key, domain", ENUM_KEYS, ids=[k for k, _ in ENUM_KEYS])
def test_every_enum_key_refuses_an_unknown_value_and_lists_the_allowed(key, domain):
    with pytest.raises(ConfigError) as e:
        load_config(overrides=[f"{key}=not_a_choice"])
    assert e.value.key == key, str(e.value)
    assert all(choice in str(e.value) for choice in domain.names() if choice is not None)


@pytest.mark.parametrize("key, domain, integer", [r for r in RANGES if isinstance(r[1], Range)],
                         ids=[r[0] for r in RANGES if isinstance(r[1], Range)])
def test_each_bound_is_where_the_declaration_says(key, domain, integer):
    """Just outside a bound is refused, a closed bound itself accepted, an open one refused."""
    step = 1 if integer else 1e-9
    for bound, outside, is_open in ((domain.low, -step, domain.low_open),
                                    (domain.high, step, domain.high_open)):
        if bound is None:
            continue
        with pytest.raises(ConfigError):
            check_value(key, bound + outside, domain, integer)
        if is_open:
            with pytest.raises(ConfigError):
                check_value(key, bound, domain, integer)
        elif not integer or float(bound).is_integer():
            check_value(key, int(bound) if integer else float(bound), domain, integer)


@pytest.mark.parametrize("override, ok", [
    ("optim.min_lr_ratio=0", True), ("optim.min_lr_ratio=1", True),
    ("optim.min_lr_ratio=1.01", False),
    ("optim.weight_decay=0", True), ("optim.grad_clip=0", True), ("optim.eps=1e-12", True),
    ("optim.beta1=0", True), ("optim.beta2=0.999999", True), ("optim.beta2=1", False),
    ("model.moe.router.jitter=0.999", True), ("model.moe.router.init=zeros", True),
    ("model.init_std=0", True), ("data.val_fraction=0", False), ("data.max_docs=1", True),
    ("model.moe.capacity_factor=0.5", True), ("model.moe.capacity_factor=0", False),
    ("model.moe.aux.switch=0", True), ("trainer.seed=4294967295", True),
    ("trainer.precision=bf16-mixed", True), ("model.moe.n_shared=0", True),
])
def test_domain_edges_through_load_config(override, ok):
    if ok:
        load_config(overrides=[override])
    else:
        with pytest.raises(ConfigError) as e:
            load_config(overrides=[override])
        assert e.value.key == override.split("=")[0]


def test_integer_keys_refuse_fractions_and_float_keys_refuse_booleans():
    cfg = load_config()
    cfg.trainer.max_steps = 2.5
    with pytest.raises(ConfigError, match="not an integer") as e:
        check_domains(cfg)
    assert e.value.key == "trainer.max_steps"
    cfg = load_config()
    cfg.optim.lr = True
    with pytest.raises(ConfigError, match="not a number"):
        check_domains(cfg)


def test_a_router_option_nobody_declared_must_still_be_finite():
    """The README's plugin router (registered by conftest) declares no domain for its
    `temperature`: nan is still refused, a finite value reaches the router."""
    with pytest.raises(ConfigError) as e:
        load_config(overrides=["model.moe.router.name=cosine", "model.moe.router.temperature=nan"])
    assert e.value.key == "model.moe.router.temperature"
    cfg = load_config(overrides=["model.moe.router.name=cosine",
                                 "model.moe.router.temperature=0.05"])
    assert cfg.model.moe.router.temperature == pytest.approx(0.05)


def test_a_bundle_that_only_changes_a_default_keeps_the_base_domain():
    bundles = [c for c in BUILTIN_ROUTER_CONFIGS if "name" in vars(c).get("__annotations__", {})]
    assert bundles
    for cls in bundles:
        assert domain_of(cls, "name") is domain_of(ComposedRouterConfig, "name")


def test_cross_field_rules_only_in_validate():
    """validate.py relates keys; a key's own domain is not checked twice."""
    cfg = load_config()
    cfg.optim.lr = float("nan")
    validate(cfg)  # not its business
    cfg = load_config(overrides=["model.moe.n_experts=4"])
    cfg.model.moe.top_k = 5
    with pytest.raises(ConfigError) as e:
        validate(cfg)
    assert e.value.key == "model.moe.top_k"


# -- YAML: dotted keys, duplicate keys --------------------------------------------------------
def test_a_config_file_may_use_dotted_keys(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("model.d_model: 64\nmodel.n_heads: 2\nmodel.moe: {top_k: 1}\n"
                 "model.moe.router: {name: sigmoid}\noptim: {lr: 0.01}\n")
    cfg = load_config(f)
    assert (cfg.model.d_model == 64 and cfg.model.moe.top_k == 1
            and cfg.optim.lr == pytest.approx(0.01))
    assert cfg.model.moe.router.name == "sigmoid"


def test_a_key_set_dotted_and_nested_is_refused(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("model:\n  moe: {top_k: 1}\nmodel.moe.top_k: 2\n")
    with pytest.raises(ConfigError) as e:
        load_config(f)
    assert e.value.key == "model.moe.top_k" and "set twice" in str(e.value)


def test_a_sweep_base_with_dotted_keys_is_expanded_too():
    cfg = load_config(base={"model.d_model": 64, "model": {"n_heads": 2}})
    assert cfg.model.d_model == 64 and cfg.model.n_heads == 2


def test_duplicate_yaml_keys_are_refused_with_their_line(tmp_path):
    f = tmp_path / "s.yaml"
    f.write_text("study: s\nspace:\n  arm:\n    a: {model.ffn: dense}\n    a: {model.ffn: moe}\n")
    with pytest.raises(ConfigError) as e:
        read_yaml(f, what="sweep")
    assert (e.value.key == "sweep"
            and "duplicate key 'a' at line 5 (first at line 4)" in str(e.value))


def test_yaml_merge_keys_may_still_be_overridden(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("small: &s {d_model: 64, n_heads: 2}\nother:\n  <<: *s\n  d_model: 32\n")
    assert read_yaml(f)["other"] == {"d_model": 32, "n_heads": 2}
