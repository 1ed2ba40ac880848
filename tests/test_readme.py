"""The README's library example runs as written."""

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_library_example_runs(tmp_path):
    text = README.read_text()
    section = text.split("## Use the pieces in your own code", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    script = tmp_path / "example.py"
    script.write_text(code)
    env = {"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True,
                          text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "val/loss" in proc.stdout and "torch.Size([2, 8, 32])" in proc.stdout


def test_readme_quickstart_has_exactly_two_commands_and_ci_runs_the_second():
    quick = README.read_text().split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    commands = [c.strip() for c in re.findall(r"```bash\n(.*?)\n\s*```", quick, re.S)]
    assert len(commands) == 2
    assert "ablate sweep sweeps/quickstart.yaml" in commands[0]
    ci = (README.parent / ".ci" / "run").read_text()
    assert commands[1] in ci
