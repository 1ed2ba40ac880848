"""Safe defaults: `ablate ui` binds 127.0.0.1 unless told otherwise; passwords in tracking or
storage URIs never reach a printed message, log line, param, tag or artifact; checkpoints and
weights load with `weights_only=True`; nothing is written outside ABLATE_HOME and the paths
the user named."""

from __future__ import annotations

import ast
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from ablate.tracking.store import mask

ROOT = Path(__file__).resolve().parents[2]
SECRET = "pa55w0rd-xyz"
FAST = ["model.d_model=32", "model.n_layers=2", "model.n_heads=2", "model.d_ff=64",
        "data.max_docs=30", "data.block_size=32", "data.batch_size=4", "trainer.max_steps=2",
        "trainer.val_every=1", "trainer.val_batches=1", "trainer.log_every=1",
        "trainer.progress=false", "tracking.routing_stats_every=1"]
# what a user's shell may point elsewhere; unset, the libraries fall back to $HOME
HOME_VARS = ("HF_HOME", "HF_DATASETS_CACHE", "XDG_CACHE_HOME", "XDG_CONFIG_HOME", "MPLCONFIGDIR",
             "TORCH_HOME", "TRITON_CACHE_DIR", "MLFLOW_DISABLE_TELEMETRY", "DO_NOT_TRACK")


def _sweep_file(path: Path, study: str, n: int = 2) -> Path:
    path.write_text(yaml.safe_dump({
        "study": study, "base": {"model": {"ffn": "moe"}}, "space": {"optim.lr": [0.001, 0.002]},
        "sampler": {"name": "bruteforce", "seed": 0}, "n_trials": n}))
    return path


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def _listening(port: int) -> list[str]:
    """Local addresses listening on `port` (IPv4 and IPv6), from /proc/net/tcp{,6}."""
    out = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            addr, p = local.rsplit(":", 1)
            if state == "0A" and int(p, 16) == port:  # 0A: LISTEN
                if len(addr) == 8:
                    out.append(socket.inet_ntoa(bytes.fromhex(addr)[::-1]))
                else:
                    out.append("ipv6:" + addr)
    return out


# -- ablate ui ---------------------------------------------------------------------------------
def test_ui_builds_a_loopback_server_unless_told_otherwise(ablate_home):
    from ablate.cli.main import build_parser
    from ablate.cli.ui import command

    a = build_parser().parse_args(["ui"])
    default = command("sqlite:///x.db", a.host, a.port)
    told = command("sqlite:///x.db", "0.0.0.0", 5055)
    assert default[default.index("--host") + 1] == "127.0.0.1"
    assert told[told.index("--host") + 1] == "0.0.0.0" and told[told.index("--port") + 1] == "5055"


def test_ui_really_listens_on_127_0_0_1_only(ablate_home, tmp_path):
    from ablate.tracking.server import free_port

    port = free_port()
    env = {**os.environ, "ABLATE_HOME": str(ablate_home)}
    err = tmp_path / "ui.stderr"
    with open(err, "wb") as f:
        proc = subprocess.Popen([sys.executable, "-m", "ablate", "ui", "--port", str(port)],
                                env=env, stdout=subprocess.DEVNULL, stderr=f, cwd=tmp_path,
                                start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not _listening(port):
            assert proc.poll() is None and time.monotonic() < deadline, "the UI did not start"
            time.sleep(0.5)
        time.sleep(1.0)  # every worker of the server has bound
        assert set(_listening(port)) == {"127.0.0.1"}
        # SIGTERM to `ablate ui` alone (not its group): it stops the server and its workers
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, err.read_text()[-3000:]
        deadline = time.monotonic() + 20
        while _listening(port) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not _listening(port), "the server outlived `ablate ui`"
    finally:
        with contextlib.suppress(ProcessLookupError):  # (gone already when the test passed)
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def test_the_sweeps_local_mlflow_server_binds_loopback():
    tree = ast.parse((ROOT / "ablate/tracking/server.py").read_text())
    hosts = [n for n in ast.walk(tree) if isinstance(n, ast.List)
             and any(isinstance(e, ast.Constant) and e.value == "--host" for e in n.elts)]
    assert hosts
    for lst in hosts:
        values = [e.value for e in lst.elts if isinstance(e, ast.Constant)]
        assert values[values.index("--host") + 1] == "127.0.0.1"


# -- weights_only --------------------------------------------------------------------------------
def _calls(pattern) -> list[tuple[str, int, ast.Call]]:
    out = []
    for path in sorted((ROOT / "ablate").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and pattern(node):
                out.append((str(path.relative_to(ROOT)), node.lineno, node))
    return out


def _weights_only(call: ast.Call) -> bool:
    return any(k.arg == "weights_only" and isinstance(k.value, ast.Constant)
               and k.value.value is True
               for k in call.keywords)


def test_every_checkpoint_load_is_weights_only():
    def name(c):
        f = c.func
        return f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "")

    loads = _calls(lambda c: name(c) in ("load", "load_from_checkpoint")
                   and isinstance(c.func, ast.Attribute)
                   and getattr(c.func.value, "id", "") in ("torch", "cls", "LMModule")
                   or name(c) == "load_from_checkpoint")
    resumes = _calls(lambda c: name(c) in ("fit", "validate", "test", "predict")
                     and any(k.arg == "ckpt_path" for k in c.keywords))
    assert loads and resumes  # the checks below look at something
    bad = [f"{p}:{n}" for p, n, c in loads + resumes if not _weights_only(c)]
    assert not bad, f"checkpoint loads without weights_only=True: {bad}"
    assert not _calls(lambda c: name(c) in ("loads", "load")
                      and getattr(c.func, "value", None) is not None
                      and getattr(c.func.value, "id", "") in ("pickle", "dill", "cloudpickle"))


def test_a_pickled_object_in_a_weights_file_is_refused(tmp_path):
    """What weights_only buys: a weights file carrying an arbitrary object runs no code."""
    import torch

    from ablate.errors import ConfigError
    from ablate.training.weights import load_weights

    marker = tmp_path / "owned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "w.pt"
    torch.save({"w": Evil()}, path)
    with pytest.raises(ConfigError, match="init.from_checkpoint"):
        load_weights(path)
    assert not marker.exists()


# -- passwords -----------------------------------------------------------------------------------
@pytest.mark.parametrize("text, shown", [
    ("postgresql+psycopg2://optuna:hunter2@db:5432/optuna",
     "postgresql+psycopg2://optuna:***@db:5432/optuna"),
    ("http://me:p%40ss@tracker:5000", "http://me:***@tracker:5000"),
    ("cannot reach mysql://root:toor@10.0.0.1/x (timeout)",
     "cannot reach mysql://root:***@10.0.0.1/x (timeout)"),
    ("two: http://a:b@h1 and https://c:d@h2/p", "two: http://a:***@h1 and https://c:***@h2/p"),
    ("no password: http://tracker:5000 and sqlite:///x.db",
     "no password: http://tracker:5000 and sqlite:///x.db"),
])
def test_mask(text, shown):
    assert mask(text) == shown


@pytest.fixture(scope="module")
def secret_sweep(tmp_path_factory):
    """A 2-worker sweep logging to an MLflow server through `http://user:SECRET@...`; the
    tracking URI is also part of the config (`tracking.tracking_uri`), so it is a param."""
    from ablate.tracking.server import local_server

    base = tmp_path_factory.mktemp("secret")
    home, server_home = base / "home", base / "server"
    path = _sweep_file(base / "sec.yaml", "sec")
    env = {**os.environ, "ABLATE_HOME": str(home)}
    old = os.environ.get("ABLATE_HOME")
    os.environ["ABLATE_HOME"] = str(server_home)  # the server's own store and log
    try:
        with local_server(f"sqlite:///{server_home / 'mlflow.db'}") as url:
            uri = url.replace("http://", f"http://user:{SECRET}@")
            proc = subprocess.run(
                [sys.executable, "-m", "ablate", "sweep", str(path), "--workers", "2",
                 "--tracking-uri", uri, f"tracking.tracking_uri={uri}", *FAST],
                env=env, capture_output=True, text=True, cwd=base, timeout=600, check=False)
            from mlflow.tracking import MlflowClient

            client = MlflowClient(url)
            exps = client.search_experiments()
            runs = client.search_runs([e.experiment_id for e in exps])
            artifacts = {}
            for r in runs:
                for a in client.list_artifacts(r.info.run_id):
                    if not a.is_dir and a.path.endswith((".yaml", ".json", ".txt", ".md")):
                        local = client.download_artifacts(r.info.run_id, a.path, str(base))
                        artifacts[f"{r.info.run_id}/{a.path}"] = Path(local).read_text()
    finally:
        if old is None:
            os.environ.pop("ABLATE_HOME", None)
        else:
            os.environ["ABLATE_HOME"] = old
    logs = {str(p.relative_to(home)): p.read_text(errors="replace")
            for p in home.rglob("*.log")}
    return {"proc": proc, "runs": runs, "artifacts": artifacts, "logs": logs}


def test_the_secret_sweep_ran(secret_sweep):
    proc, runs = secret_sweep["proc"], secret_sweep["runs"]
    assert proc.returncode == 0, proc.stderr[-2000:]
    children = [r for r in runs if "ablate.trial" in r.data.tags]
    assert len(children) == 2 and all(r.info.status == "FINISHED" for r in children)
    assert any(r.data.params.get("tracking.tracking_uri") for r in children)  # it was logged...


def _leaking_lines(secret_sweep) -> list[str]:
    proc = secret_sweep["proc"]
    texts = {"stdout": proc.stdout, "stderr": proc.stderr, **secret_sweep["logs"]}
    return [f"{name}: {line}" for name, text in texts.items() for line in text.splitlines()
            if SECRET in line]


def test_no_password_printed_or_logged(secret_sweep):
    assert secret_sweep["logs"]  # worker logs exist
    leaks = _leaking_lines(secret_sweep)
    assert not leaks, leaks[:5]


def test_no_password_in_params_or_tags(secret_sweep):
    leaks = []
    for r in secret_sweep["runs"]:
        for kind, items in (("param", r.data.params), ("tag", r.data.tags)):
            leaks += [f"{r.info.run_name} {kind} {k}" for k, v in items.items() if SECRET in str(v)]
    assert not leaks, leaks
    shown = [r.data.params["tracking.tracking_uri"] for r in secret_sweep["runs"]
             if "tracking.tracking_uri" in r.data.params]
    assert shown and all(":***@" in v for v in shown)  # ...masked


def test_no_password_in_artifacts(secret_sweep):
    assert secret_sweep["artifacts"]
    leaks = [name for name, text in secret_sweep["artifacts"].items() if SECRET in text]
    assert not leaks, leaks


# -- nothing written outside ABLATE_HOME ---------------------------------------------------------
@pytest.fixture(scope="module")
def contained(tmp_path_factory):
    """train, sweep (2 workers: a local MLflow server and worker logs), compare and dashboard
    on the default stores, from an empty working directory, with HOME and TMPDIR empty."""
    base = tmp_path_factory.mktemp("contained")
    dirs = {k: base / k for k in ("cwd", "home", "tmp", "inputs")}
    for d in dirs.values():
        d.mkdir()
    ablate_home = base / "ablate-home"
    env = {k: v for k, v in os.environ.items() if k not in HOME_VARS}
    env.update(HOME=str(dirs["home"]), TMPDIR=str(dirs["tmp"]), ABLATE_HOME=str(ablate_home))
    sweep = _sweep_file(dirs["inputs"] / "c.yaml", "c")
    dash = dirs["inputs"] / "d.yaml"
    dash.write_text("title: t\npanels: [summary, curves]\n")
    rcs = []
    for argv in (["train", "model.ffn=moe", *FAST], ["sweep", str(sweep), "--workers", "2", *FAST],
                 ["compare", "--study", "c"], ["dashboard", str(dash), "--study", "c"]):
        p = subprocess.run([sys.executable, "-m", "ablate", *argv], env=env, cwd=dirs["cwd"],
                           capture_output=True, text=True, timeout=600, check=False)
        rcs.append((argv[0], p.returncode, p.stderr[-1500:]))
    return {**dirs, "ablate_home": ablate_home, "rcs": rcs}


def test_working_directory_stays_empty(contained):
    assert [rc for _, rc, _ in contained["rcs"]] == [0, 0, 0, 0], contained["rcs"]
    assert not list(contained["cwd"].iterdir())  # no mlruns, lightning_logs, .cache, ...
    assert {"mlflow.db", "optuna", "cache", "artifacts", "logs"} <= {
        p.name for p in contained["ablate_home"].iterdir()}


def test_no_file_left_in_tmpdir(contained):
    assert _files(contained["tmp"]) == []  # (torch makes an empty torchinductor_<user> folder)


def test_home_stays_empty(contained):
    """No ~/.cache/matplotlib (MPLCONFIGDIR under ABLATE_HOME), no ~/.config/mlflow/telemetry.json
    (telemetry off), nothing else: the CLI sets this environment for itself and its workers."""
    assert _files(contained["home"]) == []
