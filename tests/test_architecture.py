"""The architecture is checked, not remembered: import-linter's contracts in pyproject.toml
(the layers cli > reporting > sweep > training > tracking > parallel > losses > models >
data > config, and the forbidden arrows) hold for every import statement of the package."""

import ast
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_import_contracts_hold():
    lint = Path(sys.executable).with_name("lint-imports")
    proc = subprocess.run([str(lint)], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          check=False, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "4 kept, 0 broken" in proc.stdout


# where a router's name may be written: its own package, the default of `model.moe.router.name`,
# and the benchmark that measures one router on purpose; `base` is also the sweep file's key
# for the base config (a different word that happens to be a router's name)
ROUTER_NAMES_MAY_APPEAR = ("ablate/models/moe/routers/", "ablate/config/schema.py", "ablate/bench/")
SAME_WORD_ELSEWHERE = {"base": ("ablate/sweep/",)}


def test_no_module_outside_the_routers_names_a_router():
    """Code that branches on a router's name breaks when a router is added or composed
    differently: outside the routers, a router is only its parts' declared properties."""
    import ablate.models.moe.routers  # noqa: F401 - registers the built-in routers
    from ablate.registry import ROUTERS

    names = set(ROUTERS.names())
    found = []
    for path in sorted((ROOT / "ablate").rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        if rel.startswith(ROUTER_NAMES_MAY_APPEAR):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                word = node.value
            elif isinstance(node, ast.Attribute) and not _is_torch(node.value):  # torch.sigmoid
                word = node.attr
            else:
                continue
            if word in names and not rel.startswith(SAME_WORD_ELSEWHERE.get(word, ("\0",))):
                found.append(f"{rel}:{node.lineno} {word}")
    assert not found, found


def _is_torch(node) -> bool:
    return isinstance(node, ast.Name) and node.id in ("torch", "F")
