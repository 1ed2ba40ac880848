"""Optuna storage, sampler and pruner from the sweep spec and CLI flags.

Storage by deployment (Optuna's own decision graph, PITFALLS #1-3): a journal file for one
machine (default, safe for many processes), PostgreSQL for many machines (heartbeats +
retry of stale trials), SQLite for one process only.
"""

from __future__ import annotations

import functools
import warnings
from pathlib import Path
from typing import Any

from ablate import paths
from ablate.errors import ConfigError
from ablate.tracking.store import check_db_driver, mask

STORAGE_ALLOWED = ("PATH.journal, journal://PATH, sqlite:///PATH (one worker), "
                   "postgresql[+driver]://..., mysql[+driver]://...")


def check_storage_url(url: str | None, workers: int = 1) -> None:
    """The Optuna storage `url` can be opened from here: a known scheme, its driver
    installed, a journal's folder writable, SQLite for one worker only. Nothing is
    created or contacted (the default journal lives in ABLATE_HOME: `paths.check_home`)."""
    if url is None:
        return
    if url.endswith(".journal") or url.startswith("journal://"):
        path = Path(url.removeprefix("journal://")).expanduser()
        if path.is_dir():
            raise ConfigError("--storage", url, STORAGE_ALLOWED, "a directory, not a journal file")
        paths.check_writable_dir(path.parent, "--storage", shown=url)
        return
    scheme = url.split(":", 1)[0].lower()
    if scheme == "sqlite" and workers > 1:
        raise ConfigError("--storage", mask(url), "a journal file or postgresql:// URL for --workers > 1",
                          "SQLite locks under parallel writers (Optuna FAQ)")
    if scheme.split("+", 1)[0] in ("sqlite", "postgresql", "mysql"):
        check_db_driver(_with_driver(url), "--storage", STORAGE_ALLOWED)
        return
    raise ConfigError("--storage", mask(url), STORAGE_ALLOWED, f"unsupported scheme {scheme}://")


def make_storage(url: str | None, study: str, workers: int = 1):
    from optuna.exceptions import ExperimentalWarning
    from optuna.storages import JournalStorage, RDBStorage, RetryHeartbeatStaleTrialCallback

    check_storage_url(url, workers)
    if url is None or url.endswith(".journal") or url.startswith("journal://"):
        path = Path(url.removeprefix("journal://")) if url else paths.default_storage_path(study)
        path.parent.mkdir(parents=True, exist_ok=True)
        from ablate.sweep.journal import open_backend

        return JournalStorage(open_backend(path))  # torn records cut first (PITFALLS #27)
    if url.startswith("sqlite"):
        return RDBStorage(url)
    url = _with_driver(url)  # postgresql or mysql (check_storage_url)
    try:
        with warnings.catch_warnings():  # heartbeats are "experimental": not the user's concern
            warnings.simplefilter("ignore", ExperimentalWarning)
            return RDBStorage(
                url,
                heartbeat_interval=60,
                grace_period=180,
                heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=3),
                engine_kwargs={"pool_pre_ping": True},
            )
    except Exception as e:  # noqa: BLE001 - unreachable server, bad credentials, ...
        raise ConfigError("--storage", mask(url), "a reachable database URL",
                          f"cannot connect ({type(e).__name__})") from None


def _quiet_experimental(make):
    """Optuna flags several samplers and pruners "experimental": not the user's concern, and
    this runs before the sweep's terminal is set up (`ablate.console.quiet_libraries`)."""
    @functools.wraps(make)
    def wrapper(*args, **kwargs):
        from optuna.exceptions import ExperimentalWarning

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ExperimentalWarning)
            return make(*args, **kwargs)
    return wrapper


SAMPLERS = {"tpe": "TPESampler", "random": "RandomSampler", "gp": "GPSampler",
            "cmaes": "CmaEsSampler", "nsga2": "NSGAIISampler",
            "bruteforce": "BruteForceSampler", "grid": "BruteForceSampler"}  # exhaustive, safe across workers
SINGLE_OBJECTIVE = ("cmaes",)  # Optuna raises at the first trial of a multi-objective study
PRUNERS = {"none": "NopPruner", "median": "MedianPruner", "hyperband": "HyperbandPruner",
           "successive_halving": "SuccessiveHalvingPruner", "wilcoxon": "WilcoxonPruner",
           "threshold": "ThresholdPruner",  # e.g. {upper: 8.0}: stop runaway trials early
           "patient": "PatientPruner"}  # a MedianPruner made patient: options of both
_PATIENT_OWN = ("patience", "min_delta")
_YAML_TYPES = {"int": lambda v: isinstance(v, int) and not isinstance(v, bool),
               "float": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
               "bool": lambda v: isinstance(v, bool), "str": lambda v: isinstance(v, str),
               "None": lambda v: v is None, "dict": lambda v: isinstance(v, dict),
               "list": lambda v: isinstance(v, list), "Any": lambda v: True}


def check_sampler(spec: dict[str, Any], n_objectives: int) -> None:
    """`sampler.seed` and `sampler.options` fit the Optuna constructor (names from its
    signature, YAML-typed values, then the constructor's own value checks): one
    ConfigError naming `sampler.options.<key>`. The sampler is built in memory only (it
    holds no storage) and dropped: nothing is created. Its warnings (a deprecated option)
    are left to the construction that counts, so a user sees them once."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        make_sampler(spec, n_objectives)


def check_pruner(spec: dict[str, Any]) -> None:
    """`pruner.options` fit the Optuna constructor, as `check_sampler` does for samplers."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        make_pruner(spec)


@_quiet_experimental
def make_sampler(spec: dict[str, Any], n_objectives: int, worker: int = 0):
    import optuna.samplers as s

    name = spec["name"]
    if name not in SAMPLERS:
        raise ConfigError("sampler.name", name, ", ".join(SAMPLERS))
    if name in SINGLE_OBJECTIVE and n_objectives > 1:
        multi = ", ".join(n for n in SAMPLERS if n not in SINGLE_OBJECTIVE)
        raise ConfigError("sampler.name", name, f"{multi} for a multi-objective study",
                          "it optimizes a single objective")
    seed = spec.get("seed")
    if seed is not None and not (_YAML_TYPES["int"](seed) and 0 <= seed < 2**32 - 1024):
        raise ConfigError("sampler.seed", seed, "an integer >= 0 (each worker adds its index)")
    cls = getattr(s, SAMPLERS[name])
    opts = _options("sampler", spec["options"], {**_settable(cls), "seed": None})
    if name == "tpe":
        opts.setdefault("constant_liar", True)  # parallel workers do not propose the same point
    return _construct("sampler", cls, opts, seed=None if seed is None else seed + worker)


@_quiet_experimental
def make_pruner(spec: dict[str, Any]):
    import optuna.pruners as p

    name = spec["name"]
    if name not in PRUNERS:
        raise ConfigError("pruner.name", name, ", ".join(PRUNERS))
    if name != "patient":
        cls = getattr(p, PRUNERS[name])
        return _construct("pruner", cls, _options("pruner", spec["options"], _settable(cls)))
    own = {k: v for k, v in _settable(p.PatientPruner).items() if k != "wrapped_pruner"}
    opts = _options("pruner", spec["options"], {**_settable(p.MedianPruner), **own})
    mine = {k: opts.pop(k) for k in _PATIENT_OWN if k in opts}
    mine.setdefault("patience", 2)
    return _construct("pruner", p.PatientPruner, mine,
                      wrapped_pruner=_construct("pruner", p.MedianPruner, opts))


def _settable(cls) -> dict[str, str]:
    """{argument: its annotation as text} of the constructor: what `options:` may set."""
    import inspect

    params = list(inspect.signature(cls.__init__).parameters.values())[1:]  # no self
    named = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    def text(annotation: Any) -> str:
        return annotation if isinstance(annotation, str) else inspect.formatannotation(annotation)

    return {q.name: text(q.annotation) for q in params if q.kind in named}


def _options(kind: str, options: Any, settable: dict[str, str | None]) -> dict[str, Any]:
    """A copy of `options`, each key an argument of the constructor with a value of its type;
    a value of None in `settable` marks an argument set elsewhere (`sampler.seed`)."""
    if not isinstance(options, dict):
        raise ConfigError(f"{kind}.options", options, "a mapping of constructor arguments")
    for key, value in options.items():
        if key in settable and settable[key] is None:
            raise ConfigError(f"{kind}.options.{key}", value, f"{kind}.{key}", f"set {kind}.{key} instead")
        if key not in settable:
            names = ", ".join(k for k, v in settable.items() if v is not None) or "none"
            raise ConfigError(f"{kind}.options.{key}", value, names, "unknown option")
        if not _fits(settable[key], value):
            if not _yaml_types(settable[key]) - {"None"}:  # only a Python object fits
                raise ConfigError(f"{kind}.options.{key}", value, "null (leave it out)",
                                  f"optuna wants a Python object ({settable[key]}), not YAML")
            raise ConfigError(f"{kind}.options.{key}", value, settable[key], "wrong type")
    return dict(options)


def _fits(annotation: str, value: Any) -> bool:
    """Does a YAML value fit `int | None`, `dict[str, Any] | None`, ...? A callable or an
    Optuna object cannot come from YAML: such an alternative fits nothing."""
    if annotation in ("", "inspect._empty", "_empty"):
        return True
    return any(_YAML_TYPES[base](value) for base in _yaml_types(annotation))


def _yaml_types(annotation: str) -> set[str]:
    """The alternatives of `annotation` a YAML value can have: {"int", "None"}, ..."""
    bases = {alt.strip(" ()").split("[", 1)[0].removeprefix("typing.")
             for alt in _top_level(annotation.replace("Optional[", "None | ("))}
    return bases & set(_YAML_TYPES)


def _top_level(annotation: str) -> list[str]:
    """"A[b | c] | None" -> ["A[b | c]", "None"]."""
    parts, depth, cur = [], 0, ""
    for ch in annotation:
        if ch in "[(":
            depth += 1
        elif ch in "])":
            depth -= 1
        if ch == "|" and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    return parts + [cur]


def _construct(kind: str, cls, opts: dict[str, Any], **fixed: Any):
    """cls(**opts, **fixed); the constructor's own ValueError/TypeError becomes one line
    naming the option that causes it (tried alone), or all of `kind.options`."""
    try:
        return cls(**opts, **fixed)
    except (TypeError, ValueError) as e:
        why = (str(e).strip().splitlines() or [type(e).__name__])[0]
        for key, value in opts.items():
            try:
                cls(**{key: value}, **fixed)
            except (TypeError, ValueError):
                raise ConfigError(f"{kind}.options.{key}", value, f"what optuna's {cls.__name__} accepts",
                                  why) from None
        raise ConfigError(f"{kind}.options", opts, f"what optuna's {cls.__name__} accepts", why) from None


def _with_driver(url: str) -> str:
    """`postgresql://` means psycopg 3 to SQLAlchemy 2.1; use psycopg2 when only it is here."""
    import importlib.util

    if url.startswith("postgresql://") and importlib.util.find_spec("psycopg") is None \
            and importlib.util.find_spec("psycopg2") is not None:
        return "postgresql+psycopg2://" + url[len("postgresql://"):]
    return url
