"""A study is one experiment: what defines it is stored when it is created, and a re-run
that changes it is refused (or, with --extend, recorded as a new revision).

What defines a study: the resolved base config (sweep `base` + command-line overrides,
defaults, presets and derived sizes filled in), the search space, the objective(s) and
`repeats`. Not: the budget (`n_trials`, `timeout`), the sampler and pruner (they choose
which points run, not what a point means), where runs are logged (`tracking.*`) and how
progress is shown (`trainer.progress`, `data.num_workers`).

The definition is kept on the Optuna study as its revisions (`record.Revision`: number,
fingerprint, definition); each trial records the revision it ran under, and so does its
MLflow run (tag `ablate.revision`). `ablate compare` reads
the newest revision unless told otherwise, so two revisions are never pooled silently.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from ablate.config.load import flatten, to_dict
from ablate.errors import AblateError
from ablate.sweep.record import Revision, objective_text, revisions, save_revisions

NOT_DEFINING = ("tracking.", "trainer.progress", "data.num_workers",
                # derived from defining keys (config/derived.py): never a change of their own
                "model.moe.routed_experts", "model.moe.routed_top_k", "model.moe.expert_width",
                "model.moe.shared_width")


class StudyChanged(AblateError):
    """The sweep file or overrides changed what a stored study measures."""


def definition(spec, base_cfg) -> dict[str, Any]:
    base = {k: v for k, v in flatten(to_dict(base_cfg)).items()
            if not k.startswith(NOT_DEFINING)}
    return json.loads(json.dumps({  # plain JSON types: what the storage keeps and returns
        "base": base,
        "space": spec.space,
        "objectives": [objective_text(o.metric, o.direction) for o in spec.objectives],
        "repeats": spec.repeats,
        **({"tune": spec.tune.as_dict()} if spec.tune is not None else {}),
    }, sort_keys=True, default=str))


def fingerprint(defn: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(defn, sort_keys=True).encode()).hexdigest()[:16]


def changes(old: dict[str, Any], new: dict[str, Any], limit: int = 3) -> str:
    """What differs, in a few words (`trainer.max_steps 4 -> 8; space.arm...`); "" if the
    two define the same experiment. A key only one side has is a key one version of ablate
    does not know: at its default it changes nothing (an upgrade must not orphan a study)."""
    out = []
    defaults = _defaults()
    for key in ("base", "space"):
        a, b = flatten(old.get(key, {})), flatten(new.get(key, {}))
        prefix = "" if key == "base" else "space."
        for k in sorted(set(a) | set(b)):
            if key == "base" and (k not in a or k not in b):
                value = b.get(k, a.get(k))
                if k not in defaults or defaults[k] == value:
                    continue  # added (or dropped) by another version, at its default
            if a.get(k, "<unset>") != b.get(k, "<unset>"):
                out.append(f"{prefix}{k} {a.get(k, '<unset>')!r} -> {b.get(k, '<unset>')!r}")
    for key in ("objectives", "repeats", "tune"):
        if old.get(key) != new.get(key):
            out.append(f"{key} {old.get(key)} -> {new.get(key)}")
    more = f" (+{len(out) - limit} more)" if len(out) > limit else ""
    return "; ".join(out[:limit]) + more


def _defaults() -> dict[str, Any]:
    from ablate.config.load import load_config

    return json.loads(json.dumps(flatten(to_dict(load_config())), default=str))


def check_or_record(study, defn: dict[str, Any], extend: bool, study_name: str) -> int:
    """-> the revision number trials of this run belong to. A new study records revision 1;
    an unchanged one goes on; a changed one stops (StudyChanged) unless `extend`, which
    records the new definition as the next revision."""
    fp = fingerprint(defn)
    revs = revisions(study)
    if not revs:  # a new study (or one from before fingerprints: adopted as it is)
        save_revisions(study, [Revision(1, fp, defn)])
        return 1
    last = revs[-1]
    if last.fingerprint == fp:
        return last.number
    diff = changes(last.definition, defn)
    if not diff:  # the same experiment, written by another version of ablate: adopt the new form
        save_revisions(study, [*revs[:-1], Revision(last.number, fp, defn)])
        return last.number
    if not extend:
        raise StudyChanged(
            f"study {study_name}: the sweep no longer matches the stored study (revision "
            f"{last.number}): {diff} (allowed: the same sweep "
            f"file and overrides; a new --study NAME; or --extend to add this as revision "
            f"{last.number + 1}, kept apart from the old one in ablate compare)")
    save_revisions(study, [*revs, Revision(last.number + 1, fp, defn)])
    return last.number + 1
