"""docs/sweep-files.md cannot drift from the parser: every key, form and name the parser
accepts is documented, and every YAML example in it loads and passes the sweep's pre-flight."""

import re
from pathlib import Path

import pytest
import yaml

from ablate.errors import ConfigError
from ablate.sweep import expect, spec
from ablate.sweep.runner import Sweep
from ablate.sweep.space import parse_space

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "sweep-files.md"
MINIMAL = {"study": "doc-example", "space": {"model.moe.top_k": [1, 2]}}


def _text() -> str:
    return DOC.read_text()


def _section(title: str) -> str:
    """The text of the `### title` section (up to the next heading)."""
    return re.search(rf"^#+ {re.escape(title)}\n(.*?)(?=^#)", _text() + "\n#",
                     re.DOTALL | re.MULTILINE).group(1)


def _allowed(fn, *args) -> list[str]:
    """The names a parser lists in its ConfigError for a bad key: what it accepts."""
    with pytest.raises(ConfigError) as e:
        fn(*args)
    return [a.strip() for a in e.value.allowed.split(",")]


def _blocks() -> list[str]:
    return re.findall(r"^```yaml\n(.*?)^```", _text(), re.DOTALL | re.MULTILINE)


def test_the_table_lists_exactly_the_top_level_keys():
    rows = re.findall(r"^\| `(\w+)` \|", _section("Top-level keys"), re.MULTILINE)
    assert sorted(rows) == sorted(spec.TOP_KEYS)
    for key in spec.TOP_KEYS:  # and each is shown in an example
        assert any(re.search(rf"^{key}:", b, re.MULTILINE) for b in _blocks()), key


def test_every_space_form_is_documented():
    space = _section("`space`")
    entry_keys = _allowed(parse_space, {"k": {"bogus": 1}})  # type, choices, low, high, ...
    kinds = _allowed(parse_space, {"k": {"type": "bogus"}})  # categorical, int, float
    assert len(entry_keys) >= 6 and kinds
    for key in entry_keys:
        assert f"{key}:" in space, key
    for kind in kinds:
        assert f"type: {kind}" in space, kind
    assert re.search(r"^  arm:$", space, re.MULTILINE)  # the arm form, in an example
    assert re.search(r"^  [\w.]+: \[", space, re.MULTILINE)  # a plain list


def test_every_sampler_pruner_and_their_keys_are_documented():
    samplers = re.findall(r"^\| `(\w+)` \|", _section("`sampler`"), re.MULTILINE)
    assert sorted(samplers) == sorted(spec.SAMPLERS)
    pruner = _section("`pruner`")
    for name in spec.PRUNERS:
        assert f"`{name}`" in pruner, name
    for key in _allowed(spec._named, {"name": "tpe", "bogus": 1}, "sampler", spec.SAMPLERS, "auto"):
        assert f"`{key}`" in _section("`sampler`"), key
    assert "`options`" in pruner


def test_objectives_and_expect_keys_are_documented():
    objective = _section("`objective` and `objectives`")
    for word in ("metric", "direction", *spec.DIRECTIONS):
        assert word in objective, word
    table = _section("`expect`")
    for key in expect.KEYS:
        assert re.search(rf"^\|.*`{key}[`:]", table, re.MULTILINE), key  # in the table
    for agg in expect.AGGREGATES:
        assert f"`{agg}:`" in table, agg


def test_the_data_split_and_revisions_are_documented():
    data = _section("Data in a sweep: how text becomes train and validation")
    for word in ("data.val_fraction", "data.validation_files", "a single file", "by document",
                 "by file", "data.source: hub"):
        assert word in data, word
    revisions = _section("Changing a study: `--extend` and revisions")
    for word in ("--extend", "--study NAME", "--revision", "ablate.revision"):
        assert word in revisions, word


@pytest.mark.parametrize("i", range(len(_blocks())))
def test_every_yaml_example_loads_and_passes_preflight(i, tmp_path, ablate_home):
    example = yaml.safe_load(_blocks()[i])
    raw = {**MINIMAL, **example}
    if "base_config" in raw:  # the file it names, as a small config of its own
        (tmp_path / raw["base_config"]).write_text("model: {d_model: 64, n_heads: 2}\n")
    path = tmp_path / "example.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    loaded = spec.load_sweep(path)
    for key in example:  # what the example says is what the parser read
        assert key in loaded.source
    Sweep(loaded)  # the base, every arm and value, objectives, sampler/pruner options, expect
    assert not ablate_home.exists()  # nothing created


def test_the_readme_links_the_reference():
    assert "docs/sweep-files.md" in (ROOT / "README.md").read_text()
