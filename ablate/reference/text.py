"""How `ablate config keys` writes things: a value as YAML would, a docstring's first
sentence, aligned columns."""

from __future__ import annotations

import inspect
import re
import sys
from typing import Any

MAX_SUMMARY = 160  # characters of a docstring's first sentence shown as one line


def yaml_text(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, dict)):
        import json

        return json.dumps(value)
    return str(value)


def first_sentence(obj: Any, fallback: str = "") -> str:
    """The first sentence of `obj`'s own docstring (not inherited, not dataclass-generated);
    else of the function `fallback` in its module; else of its module."""
    doc = vars(obj).get("__doc__") if isinstance(obj, type) else getattr(obj, "__doc__", None)
    if doc and isinstance(obj, type) and doc.startswith(obj.__name__ + "("):
        doc = None  # dataclasses write the signature where there is no docstring
    module = sys.modules.get(getattr(obj, "__module__", "") or "")
    if not doc and fallback and module is not None:
        doc = getattr(getattr(module, fallback, None), "__doc__", None)
    if not doc and module is not None and obj is not None:
        doc = module.__doc__
    if not doc:
        return ""
    para = " ".join(inspect.cleandoc(doc).split("\n\n")[0].split())
    para = re.sub(r"`([^`<]+?)\s*<[^>]+>`__", r"\1", para)  # reST links: their text
    first = re.split(r"(?<=[a-z0-9)\]])\.\s+(?=[A-Z])", para, maxsplit=1)[0].rstrip(".:")
    return first if len(first) <= MAX_SUMMARY else first[:MAX_SUMMARY].rsplit(" ", 1)[0] + " ..."


def columns(rows: list[tuple[str, ...]], indent: str = "") -> list[str]:
    """Every column but the last padded to its widest cell; the last one is left as is."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    return [indent + "  ".join([c.ljust(w) for c, w in zip(r, widths)] + [r[-1]]).rstrip()
            for r in rows]
