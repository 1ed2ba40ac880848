"""The model is single-process maths: nothing under ablate/models/ asks which rank it is on or
reads the environment. Parallelism is applied from outside (ablate/parallel/)."""

from __future__ import annotations

import re
from pathlib import Path

import ablate.models

FORBIDDEN = re.compile(r"torch\.distributed|\bdist\.|os\.environ|getenv|WORLD_SIZE|\bRANK\b|"
                       r"get_rank|get_world_size")


def test_models_read_no_process_group_and_no_environment():
    root = Path(ablate.models.__file__).parent
    files = sorted(root.rglob("*.py"))
    assert len(files) > 10  # the package was found
    hits = [f"{f.relative_to(root.parent.parent)}:{i}: {line.strip()}"
            for f in files for i, line in enumerate(f.read_text().splitlines(), 1)
            if FORBIDDEN.search(line)]
    assert hits == [], "distributed or environment reads on the model path:\n" + "\n".join(hits)
