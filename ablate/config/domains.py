# Over 250 lines: the domain types, their field helpers and the one walker that enforces them.
"""Every config key's domain, declared next to its field and enforced here, in one place.

A field says which values make sense with a helper that returns a dataclass `field`:

    lr: float = positive(3e-3)                       # a finite number > 0
    min_lr_ratio: float = unit_interval(0.1)         # 0 <= min_lr_ratio <= 1
    source: str = one_of("stdlib", SOURCES)          # an enum
    name: str = one_of("softmax_topk", ROUTERS.names)  # a registry (plugins add names)

`check_domains(cfg)` walks a resolved config, the router's own dataclass included, and
raises one `ConfigError` for the first value outside its domain: not a number, nan or
inf, the wrong sign, out of range, not an integer, not an allowed choice. Without this a
nan learning rate reaches the optimizer and a nan aux weight silently turns its loss off.

A field that redefines an inherited one only to change its default (the named router
bundles) keeps the domain of the base class. A field nobody declared (a plugin's config)
still has to be finite if it is a float. Cross-field rules (top_k <= n_experts, ...) live
in `ablate.config.validate`.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Union

from ablate.errors import ConfigError

Choices = tuple | Callable[[], Iterable[str]]


@dataclass(frozen=True)
class Range:
    """A finite number (an integer where the field is an int) between optional bounds."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False  # True: low itself is outside
    high_open: bool = False

    def why_not(self, value: Any, integer: bool) -> str | None:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return "not a number"
        if integer and not isinstance(value, int):
            return "not an integer"
        if not math.isfinite(value):
            return "not a finite number"
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            return "too small"
        if self.high is not None and (value > self.high or (self.high_open and value == self.high)):
            return "too large"
        return None

    def allowed(self, name: str, integer: bool) -> str:
        what = "an integer" if integer else "a finite number"
        low, high = self.low, self.high
        if integer and low is not None and self.low_open:  # "an integer >= 1", not "> 0"
            low, low_open = math.floor(low) + 1, False
        else:
            low_open = self.low_open
        lo = None if low is None else f"{_num(low)} {'<' if low_open else '<='} "
        hi = None if high is None else f" {'<' if self.high_open else '<='} {_num(high)}"
        if lo and hi:
            return f"{what} with {lo}{name}{hi}"
        if lo:
            return f"{what} {'>' if low_open else '>='} {_num(low)}"
        if hi:
            return f"{what}{hi}"
        return what


@dataclass(frozen=True)
class Derived(Range):
    """A size load_config fills in from other keys: an integer > 0 once resolved."""

    low: float | None = 0
    low_open: bool = True

    def allowed(self, name: str = "", integer: bool = False) -> str:
        return "unset; load_config derives it from the keys its help names"


@dataclass(frozen=True)
class OneOf:
    """A string from a fixed tuple, or from a callable (a registry that plugins extend)."""

    choices: Choices

    def names(self) -> list[str]:
        return list(self.choices() if callable(self.choices) else self.choices)

    def why_not(self, value: Any, integer: bool = False) -> str | None:
        return None if value in self.names() else "unknown value"

    def allowed(self, name: str = "", integer: bool = False) -> str:
        return ", ".join(map(str, self.names()))


@dataclass(frozen=True)
class Text:
    """Any string: names, paths and URLs, checked where they are used (data, stores)."""

    def why_not(self, value: Any, integer: bool = False) -> str | None:
        return None if isinstance(value, str) else "not a string"

    def allowed(self, name: str = "", integer: bool = False) -> str:
        return "a string"


@dataclass(frozen=True)
class Weights:
    """A {name: weight} mapping: names from a registry, each weight in `weight`."""

    names: Callable[[], Iterable[str]]
    weight: Range
    kind: str  # for the error: "aux loss"


Domain = Range | OneOf | Text | Weights
FINITE = Range()  # what an undeclared float field must be


# -- the helpers a schema uses: each returns a dataclass field with its domain ------------------
# `help` is the key's one line in `ablate config keys` (a test requires it of every key).
def declare(default: Any, domain: Domain | None, help: str = "", **kwargs: Any) -> Any:
    """field(default=...) carrying `domain` and `help`; a list/dict default goes through kwargs."""
    metadata = {"domain": domain} if domain is not None else {}
    if help:
        metadata["help"] = help
    if "default_factory" in kwargs:
        return field(metadata=metadata, **kwargs)
    return field(default=default, metadata=metadata, **kwargs)


def described(default: Any, help: str, **kwargs: Any) -> Any:
    """A field whose type says it all (a bool, a list of paths): help only, no domain."""
    return declare(default, None, help, **kwargs)


def finite(default: Any, help: str = "") -> Any:
    return declare(default, FINITE, help)


def positive(default: Any, help: str = "") -> Any:
    """> 0 (for an int field: >= 1)."""
    return declare(default, Range(0, low_open=True), help)


def non_negative(default: Any, help: str = "") -> Any:
    return declare(default, Range(0), help)


def unit_interval(default: Any, help: str = "") -> Any:
    """0 <= x <= 1."""
    return declare(default, Range(0, 1), help)


def below_one(default: Any, help: str = "") -> Any:
    """0 <= x < 1: probabilities that must leave something (dropout, jitter, momentum)."""
    return declare(default, Range(0, 1, high_open=True), help)


def fraction(default: Any, help: str = "") -> Any:
    """0 < x < 1: a share where both sides must be non-empty."""
    return declare(default, Range(0, 1, low_open=True, high_open=True), help)


def in_range(default: Any, low: float | None, high: float | None, *, low_open: bool = False,
             high_open: bool = False, help: str = "") -> Any:
    return declare(default, Range(low, high, low_open, high_open), help)


def one_of(default: Any, choices: Choices, help: str = "") -> Any:
    return declare(default, OneOf(choices), help)


def text(default: Any, help: str = "") -> Any:
    return declare(default, Text(), help)


def derived(help: str) -> Any:
    """A size load_config fills in from other keys (`ablate.config.derived`): read it, never
    set it (a value other than the one it resolves to is refused). An int > 0 once resolved."""
    return declare(None, Derived(), help)


def weights(default_factory: Callable[[], dict], names: Callable[[], Iterable[str]],
            kind: str, help: str = "") -> Any:
    """{name: weight}, each weight finite and >= 0 (0 turns a term off; nan must not)."""
    return declare(None, Weights(names, Range(0), kind), help, default_factory=default_factory)


# -- the walker -------------------------------------------------------------------------------
def domain_of(cls: type, name: str) -> Domain | None:
    """The domain declared for field `name` of dataclass `cls`, or of the nearest base class
    that declares it (a subclass may redefine a field only to change its default)."""
    return _declared(cls, name, "domain")


def help_of(cls: type, name: str) -> str:
    """The one line of help declared for field `name` (inherited like its domain), or ""."""
    return _declared(cls, name, "help") or ""


def _declared(cls: type, name: str, what: str) -> Any:
    for klass in cls.__mro__:
        f = getattr(klass, "__dataclass_fields__", {}).get(name)
        if f is not None and what in f.metadata:
            return f.metadata[what]
    return None


@functools.cache
def field_types(cls: type) -> dict[str, tuple[type, bool]]:
    """{field: (the type without Optional, whether None is allowed)} of a dataclass."""
    hints = typing.get_type_hints(cls)
    out = {}
    for f in dataclasses.fields(cls):
        hint = hints.get(f.name, Any)
        args = typing.get_args(hint)
        optional = typing.get_origin(hint) is Union and type(None) in args
        if optional:
            rest = [a for a in args if a is not type(None)]
            hint = rest[0] if len(rest) == 1 else Any
        out[f.name] = (typing.get_origin(hint) or hint, optional)
    return out


def check_domains(cfg: Any, prefix: str = "") -> None:
    """Raise one ConfigError for the first field of dataclass `cfg` (recursively) whose value
    is outside its declared domain; keys are dotted (`model.moe.router.jitter`)."""
    types = field_types(type(cfg))
    for f in dataclasses.fields(cfg):
        key, value = prefix + f.name, getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            check_domains(value, key + ".")
            continue
        kind, optional = types[f.name]
        if value is None:
            if not optional:
                raise ConfigError(key, value, f"a value of type {getattr(kind, '__name__', kind)}",
                                  "missing")
            continue
        domain = domain_of(type(cfg), f.name)
        if domain is None and kind is float:
            domain = FINITE
        if isinstance(domain, Weights):
            _check_weights(key, value, domain)
        elif domain is not None:
            check_value(key, value, domain, integer=kind is int)


def check_value(key: str, value: Any, domain: Domain, integer: bool = False) -> None:
    """One value against one domain; the leaf of `key` names it in the message."""
    why = domain.why_not(value, integer)
    if why is not None:
        raise ConfigError(key, value, domain.allowed(key.rsplit(".", 1)[-1], integer), why)


def _check_weights(key: str, value: Any, domain: Weights) -> None:
    names = list(domain.names())
    for name, weight in dict(value).items():
        if name not in names:
            raise ConfigError(f"{key}.{name}", weight, ", ".join(names), f"unknown {domain.kind}")
        check_value(f"{key}.{name}", weight, domain.weight)


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e15 else repr(x)
