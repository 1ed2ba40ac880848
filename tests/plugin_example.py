"""The README's custom-router example, as an importable module for the tests."""

import re
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_plugin_source() -> str:
    section = README.read_text().split("## Add your own router", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def install(tmp_dir: Path) -> str:
    """Write the example as `myrouters.py` in tmp_dir, put it on sys.path, return its name."""
    (tmp_dir / "myrouters.py").write_text(readme_plugin_source())
    if str(tmp_dir) not in sys.path:
        sys.path.insert(0, str(tmp_dir))
    return "myrouters"
