"""Optuna sampler and pruner from the sweep spec; the storage from `--storage`
(`ablate.sweep.storages`: one table from a URL's scheme to its opener)."""

from __future__ import annotations

import functools
import warnings
from typing import Any

from ablate.errors import ConfigError
from ablate.sweep.storages import STORAGE_ALLOWED, check_storage_url, make_storage  # noqa: F401 - imported from here


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
            # exhaustive, safe across workers
            "bruteforce": "BruteForceSampler", "grid": "BruteForceSampler"}
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
            raise ConfigError(f"{kind}.options.{key}", value, f"{kind}.{key}",
                              f"set {kind}.{key} instead")
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
                raise ConfigError(f"{kind}.options.{key}", value,
                                  f"what optuna's {cls.__name__} accepts",
                                  why) from None
        raise ConfigError(f"{kind}.options", opts,
                          f"what optuna's {cls.__name__} accepts", why) from None
