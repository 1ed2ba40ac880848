"""`ablate config show` and `ablate config keys`: the resolved config and the reference of
every key and registered name, checked against the schema and the registries themselves."""

import dataclasses

import pytest
import yaml

from ablate.cli import main
from ablate.config.domains import help_of
from ablate.config.load import flatten, load_config, to_dict
from ablate.config.schema import RunConfig, preset_names
from ablate.registry import AUX_LOSSES, GATES, ROUTERS, SCORES, SELECTIONS


def _run(capsys, *argv) -> tuple[int, str, str]:
    rc = main(["config", *argv])
    out, err = capsys.readouterr()
    return rc, out, err


# -- config show ----------------------------------------------------------------------------------
def test_show_prints_what_load_config_returns_after_preset_and_budget(capsys, tmp_path):
    cfg_file = tmp_path / "small.yaml"
    cfg_file.write_text("model: {d_model: 64, n_heads: 2}\n")
    args = [str(cfg_file), "model.ffn=moe", "model.moe.preset=mixtral", "budget.ffn_active=512"]
    rc, out, _ = _run(capsys, "show", *args)
    assert rc == 0
    shown = yaml.safe_load(out)
    assert shown == to_dict(load_config(args[0], args[1:]))
    assert shown["model"]["d_model"] == 64  # the file
    assert shown["model"]["moe"]["router"]["name"] == "topk_softmax"  # the preset's router
    assert shown["model"]["moe"]["aux"] == {"switch": 0.02, "z": 0.0}  # the preset's weights
    assert shown["model"]["moe"]["d_expert"] == 256  # the budget: 512 units over top_k=2
    assert shown["model"]["d_ff"] == 512


@pytest.mark.parametrize("args, key", [
    (["model.moe.top_k=9", "model.moe.n_experts=8"], "model.moe.top_k"),
    (["model.moe.nope=1"], "model.moe.nope"),
    (["missing.yaml"], "config"),
    (["model.moe.preset=gpt5"], "model.moe.preset"),
])
def test_show_bad_input_is_one_line_exit_2(capsys, args, key):
    rc, out, err = _run(capsys, "show", *args)
    assert rc == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and err.startswith(f"error: {key}")


def test_config_without_an_action_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as e:
        main(["config"])
    assert e.value.code == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


# -- config keys ----------------------------------------------------------------------------------
def _schema_fields(cls, prefix=""):
    """(dotted key, dataclass, field name) for every leaf of the schema, walked here on its own."""
    for f in dataclasses.fields(cls):
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if dataclasses.is_dataclass(default):
            yield from _schema_fields(type(default), f"{prefix}{f.name}.")
        else:
            yield f"{prefix}{f.name}", cls, f.name


def _builtin_router_configs():
    return {ROUTERS.get(n).config for n in ROUTERS.names()
            if ROUTERS.get(n).config.__module__.startswith("ablate.")}


def test_every_schema_key_has_help():
    missing = [key for key, cls, name in _schema_fields(RunConfig) if not help_of(cls, name)]
    for cfg in _builtin_router_configs():
        missing += [f"model.moe.router.{f.name} ({cfg.__name__})" for f in dataclasses.fields(cfg)
                    if not help_of(cfg, f.name)]
    assert not missing, f"keys without help= in the schema: {missing}"


def _sections(out: str) -> dict[str, list[str]]:
    """{section title: [lines]}; the config keys come first, under 'config keys'."""
    sections, title = {}, None
    for line in out.splitlines():
        if not line.strip():
            title = None
        elif title is None:
            title = line
            sections[title] = []
        else:
            sections[title].append(line)
    return sections


def _names(sections, title_start: str) -> set[str]:
    (lines,) = [v for k, v in sections.items() if k.startswith(title_start)]
    return {line.split()[0] for line in lines}


def test_keys_lists_every_key_with_its_help(capsys):
    rc, out, _ = _run(capsys, "keys")
    assert rc == 0
    sections = _sections(out)
    rows = {line.split()[0]: line for line in sections[next(iter(sections))][1:]}  # after KEY ...
    resolved = set(flatten(to_dict(load_config())))  # what a run resolves, independently
    aux = {f"model.moe.aux.{n}" for n in AUX_LOSSES.names()}
    assert resolved - set(rows) == set()
    assert aux - set(rows) == set()
    for key, _, _ in _schema_fields(RunConfig):
        if key not in ("model.moe.router", "model.moe.aux"):  # expanded above
            assert key in rows, key
    builtin = {f"model.moe.router.{f.name}" for c in _builtin_router_configs()
               for f in dataclasses.fields(c)}
    schema = {key for key, _, _ in _schema_fields(RunConfig)}
    for key in (schema | builtin | aux) & set(rows):
        help_text = rows[key].split(None, 3)[3]
        assert not help_text.startswith("(allowed"), f"{key} has no help: {rows[key]}"
    # the type, the default and the domain come from the schema
    assert rows["model.moe.top_k"].split()[1:3] == ["int", "2"]
    assert "an integer >= 1" in rows["model.moe.top_k"]
    assert "(allowed: stdlib, text, json, parquet, hub)" in rows["data.source"]
    # which router part reads an option
    assert "[select=group_limited]" in rows["model.moe.router.n_groups"]
    assert "[gate=" in rows["model.moe.router.normalize"]
    # a plugin router's own key (tests/plugin_example.py, registered by conftest)
    assert "[name=cosine]" in rows["model.moe.router.temperature"]


def test_keys_lists_every_registered_name(capsys):
    from ablate.reporting.panels import PANELS
    from ablate.sweep.spec import PRUNERS, SAMPLERS
    from ablate.tracking.metrics import FIXED, MOE_STATS

    out = _run(capsys, "keys")[1]
    sections = _sections(out)
    assert _names(sections, "routers") == set(ROUTERS.names())
    assert _names(sections, "router scores") == set(SCORES.names())
    assert _names(sections, "router selections") == set(SELECTIONS.names())
    assert _names(sections, "router gates") == set(GATES.names())
    assert _names(sections, "samplers") == set(SAMPLERS)
    assert _names(sections, "pruners") == set(PRUNERS)
    assert _names(sections, "dashboard panels") == set(PANELS.names())
    assert _names(sections, "MoE presets") == set(preset_names())
    metrics = _names(sections, "metrics")
    assert set(FIXED) | {f"moe/{s}" for s in MOE_STATS} <= metrics
    assert {f"train/aux/{n}" for n in AUX_LOSSES.names()} <= metrics
    # every registered name has a line of text, not only its name
    for title, lines in list(sections.items())[1:]:
        for line in lines:
            assert len(line.split()) > 1, f"{title}: {line!r} has no description"


def test_keys_prefix_selects_keys_and_sections(capsys):
    out = _run(capsys, "keys", "model.moe.router")[1]
    assert "model.moe.router.n_groups" in out and "data.source" not in out
    assert "routers (" in out and "router selections (" in out  # their key starts so
    assert "samplers (" not in out
    out = _run(capsys, "keys", "metrics")[1]
    assert out.startswith("metrics (") and "val/loss" in out and "model." not in out
    out = _run(capsys, "keys", "moe/")[1]  # rows of a section by their own name
    assert "moe/load_cv" in out and "val/loss" not in out


def test_keys_unknown_prefix_is_one_line_exit_2(capsys):
    rc, out, err = _run(capsys, "keys", "modle.moe")
    assert rc == 2 and out == ""
    assert err.startswith("error: PREFIX='modle.moe': matches nothing")
    assert len(err.strip().splitlines()) == 1
