"""Every metric name a training run logs, in one place: a sweep's objective must be one of
them (a typo like `val/los` would train every trial to the end and then fail it).

Fixed names, plus families: `train/aux/<loss>` and `train/aux_weighted/<loss>` for every
registered aux loss and router reward loss, `moe/<stat>` (mean over MoE layers),
`moe/l<i>/<stat>` per MoE layer, and `train/mtp/d<k>` per multi-token-prediction depth.
A new metric is logged by one place in the code and named here. The `SIZES` describe a
config, not a run's progress: they are logged as MLflow params (MLflow's compare view
would otherwise plot them first), and read back by `ablate.tracking.runs.number`.
"""

from __future__ import annotations

import difflib
import re

from ablate.errors import ConfigError

FIXED = {
    "train/loss": "LM loss + weighted aux losses",
    "train/lm_loss": "next-token cross-entropy on the training batch",
    "train/loss_spike": "the step's LM loss / its recent average (> 1: a spike)",
    "val/loss": "next-token cross-entropy on the validation blocks (no aux terms)",
    "val/ppl": "exp(val/loss)",
    "val/bpb": "bits per byte of validation text: val/loss / ln 2 x tokens / bytes (compares "
               "runs whose tokenizers differ)",
    "budget/val_loss": "val/loss of a wsd run at each of trainer.budgets (step: the budget in "
                       "tokens)",
    "budget/val_ppl": "exp(budget/val_loss)",
    "budget/val_bpb": "val/bpb at each of trainer.budgets",
    "perf/tokens_per_s": "training throughput",
    "perf/step_ms": "wall time per optimizer step",
    "params_total": "every parameter", "params_active": "parameters one token touches",
    "params_embedding": "embedding parameters", "flops_per_token": "training FLOPs per token",
    "kv_cache_bytes_per_token": "inference KV cache per token over all layers (bf16)",
    "n_moe_layers": "MoE blocks in the model",
}
SIZES = ("params_total", "params_active", "params_embedding", "flops_per_token",
         "kv_cache_bytes_per_token", "n_moe_layers")
MOE_STATS = {
    "load_cv": "std/mean of the tokens per expert", "max_load": "max/mean tokens per expert",
    "dead_experts": "experts that got no token", "drop_frac": "token-slots dropped by capacity",
    "router_entropy": "mean entropy of the routing distribution", "z": "mean logsumexp(logits)^2",
    "bias_norm": "norm of the aux-loss-free balancing bias",
    "router_grad_norm": "gradient norm reaching the router's weights",
    "routing_churn": "fraction of probe tokens whose first-choice expert changed",
}


def _loss_names() -> list[str]:
    from ablate.registry import AUX_LOSSES, SELECTIONS

    names = set(AUX_LOSSES.names())
    for sel in SELECTIONS.names():
        names.update(getattr(SELECTIONS.get(sel).obj, "reward_loss_names", ()))
    return sorted(names)


def patterns() -> list[tuple[str, str]]:
    """(regex, what it is) for the metric families."""
    losses = "|".join(map(re.escape, _loss_names()))
    stats = "|".join(MOE_STATS)
    return [(rf"train/aux/({losses})", "an aux loss, unscaled"),
            (rf"train/aux_weighted/({losses})", "an aux loss times its weight"),
            (rf"moe/({stats})", "a routing statistic, mean over MoE layers"),
            (rf"moe/l\d+/({stats})", "a routing statistic of one MoE layer"),
            (r"train/mtp/d[1-9]\d*",
             "the MTP cross-entropy of depth k (model.mtp.depth >= k), unscaled")]


def is_logged(name: str) -> bool:
    return name in FIXED or any(re.fullmatch(p, name) for p, _ in patterns())


def check_metric(name: str, key: str) -> None:
    """ConfigError unless `name` is a metric a run logs, with the closest names as a hint."""
    if isinstance(name, str) and is_logged(name):
        return
    examples = (list(FIXED) + [f"moe/{s}" for s in MOE_STATS]
                + [f"train/aux/{n}" for n in _loss_names()])
    close = difflib.get_close_matches(str(name), examples, n=3, cutoff=0.6)
    hint = f"did you mean {', '.join(close)}?" if close else "not a metric ablate logs"
    raise ConfigError(key, name, ", ".join(list(FIXED)[:6]) + ", moe/<stat>, moe/l<i>/<stat>, "
                      "train/aux/<loss>, train/mtp/d<k> (ablate config keys metrics)", hint)
