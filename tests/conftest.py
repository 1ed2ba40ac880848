import os

# datasets reads this at import: tests never touch the network
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")

import pytest  # noqa: E402

# a model and a run small enough for seconds on one CPU core
TINY = [
    "model.d_model=32", "model.n_layers=2", "model.n_heads=2", "model.d_ff=64",
    "data.max_docs=30", "data.block_size=32", "data.batch_size=4",
    "trainer.max_steps=6", "trainer.val_every=3", "trainer.val_batches=2", "trainer.log_every=2",
    "trainer.progress=false", "tracking.routing_stats_every=2",
]


@pytest.fixture
def ablate_home(tmp_path, monkeypatch):
    home = tmp_path / "ablate-runs"
    monkeypatch.setenv("ABLATE_HOME", str(home))
    return home


@pytest.fixture
def tiny():
    return list(TINY)


def pytest_configure(config):
    """Register the README's plugin router before collection, so every test parametrized over
    the router registry runs on a router defined outside the package too."""
    import tempfile
    from pathlib import Path

    from ablate.registry import load_plugins
    from tests.plugin_example import install

    load_plugins([install(Path(tempfile.mkdtemp(prefix="ablate-plugin-")))])
