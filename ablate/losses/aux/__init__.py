"""Balancing and stability losses: pure keyword-only functions, one per file, registered by
name. Importing this package registers every module in it: a new aux loss is one file here
(a function of an `AuxContext` decorated with `AUX_LOSSES.register("name")`), nothing else.

Shapes: T tokens, E routed experts, K slots per token (an id of -1 is an empty slot:
expert choice, top-p, capacity drops), D devices (contiguous groups of E/D experts).
Each registered loss receives an `AuxContext` and returns an unscaled scalar; the MoE
layer multiplies by the weight from `model.moe.aux.<name>` and the LightningModule logs
both, apart from the LM loss. Balance losses are 1.0 at perfect balance.
"""

import importlib
import pkgutil

from ablate.losses.aux.comm import comm_loss
from ablate.losses.aux.common import AuxContext, expert_fraction, needs
from ablate.losses.aux.device import device_loss
from ablate.losses.aux.importance import importance_loss
from ablate.losses.aux.seq_aux import seq_aux_loss
from ablate.losses.aux.switch import switch_loss
from ablate.losses.aux.z import z_loss

for _m in pkgutil.iter_modules(__path__):  # every loss of the package, the ones above and any new file
    importlib.import_module(f"{__name__}.{_m.name}")

__all__ = ["AuxContext", "comm_loss", "device_loss", "expert_fraction", "importance_loss",
           "needs", "seq_aux_loss", "switch_loss", "z_loss"]
