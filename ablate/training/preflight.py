"""Pre-flight: what a valid config still needs from this machine, checked before anything
is created (no ABLATE_HOME, no cache, no MLflow run): one ConfigError, one line, exit 2.

`check_environment(cfg)` runs them all for one resolved config; `ablate train` calls it,
and the sweep's pre-flight calls it for every distinct arm. Each check is also usable alone.
"""

from __future__ import annotations

import os
from pathlib import Path

from ablate.config.schema import InitConfig, RunConfig, TrainerConfig
from ablate.data.checks import check_data
from ablate.paths import check_home
from ablate.tracking.store import check_tracking_uri

__all__ = ["check_data", "check_devices", "check_environment", "check_home", "check_init",
           "check_tracking_uri"]

CUDA = ("gpu", "cuda")
TORCH_MAGIC = b"PK\x03\x04"  # torch.save writes a zip archive (since torch 1.6)


def check_environment(cfg: RunConfig, tracking_uri: str | None = None) -> None:
    """ABLATE_HOME, the tracking URI (`tracking_uri`: the --tracking-uri flag, else the
    config's), the data files, the checkpoint to start from and the devices of `cfg`."""
    check_home()
    if tracking_uri:
        check_tracking_uri(tracking_uri, "--tracking-uri")
    else:
        check_tracking_uri(cfg.tracking.tracking_uri, "tracking.tracking_uri")
    check_data(cfg.data)
    check_init(cfg.init)
    check_devices(cfg.trainer)


def check_init(i: InitConfig) -> None:
    """`init.from_checkpoint` is a file torch.save wrote (a zip archive): checked before
    `ablate.training.launch.prepare_init` reads it and anything is created."""
    from ablate.errors import ConfigError

    if not i.from_checkpoint:
        return
    path = Path(i.from_checkpoint).expanduser()
    allowed = "a weights file written by ablate (.../weights.pt)"
    if not path.is_file():
        why = "a directory, not a file" if path.is_dir() else "file not found"
        raise ConfigError("init.from_checkpoint", str(path), allowed, why)
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
    except OSError as e:
        raise ConfigError("init.from_checkpoint", str(path), allowed,
                          f"cannot read it ({e.strerror or type(e).__name__})") from None
    if magic != TORCH_MAGIC:
        raise ConfigError("init.from_checkpoint", str(path), allowed, "not a file torch.save wrote")


def check_devices(t: TrainerConfig) -> None:
    """The accelerator and device count exist here; Lightning would fail only after the
    MLflow run was created (and leave it RUNNING)."""
    from ablate.errors import ConfigError

    if t.accelerator in CUDA:
        import torch

        n = torch.cuda.device_count()  # NVML: does not initialise CUDA in this process
        if n == 0:
            visible = os.environ.get("CUDA_VISIBLE_DEVICES")
            hint = f" (CUDA_VISIBLE_DEVICES={visible!r})" if visible is not None else ""
            raise ConfigError("trainer.accelerator", t.accelerator, "cpu or auto on this machine",
                              f"no CUDA GPU is visible here{hint}")
        if t.devices > n:
            raise ConfigError("trainer.devices", t.devices, f"1..{n} (the GPUs visible here)",
                              "more devices than GPUs")
    elif t.accelerator == "mps":
        import torch

        if not torch.backends.mps.is_available():
            raise ConfigError("trainer.accelerator", t.accelerator, "cpu or auto on this machine",
                              "no Apple MPS device here")
    if t.precision == "16-mixed" and not _has_cuda(t):
        raise ConfigError("trainer.precision", t.precision, "32-true or bf16-mixed without a GPU",
                          "16-mixed needs a CUDA GPU")


def _has_cuda(t: TrainerConfig) -> bool:
    if t.accelerator in ("cpu", "mps"):
        return False
    import torch

    return torch.cuda.device_count() > 0
