"""Hash layers (Roller et al. 2021, "Hash Layers For Large Sparse Models").

The expert of a token is a fixed function of its token id: scores take no part.
Hash: Knuth's multiplicative hash h = (id * 2654435761 + seed * 97) mod 2^32, then the
murmur3 32-bit finaliser (xor-shift-multiply) so that the low bits are mixed too: without
it, h mod E for a power-of-two E is just (id + seed) mod E, since 2654435761 = 1 mod 2^4.
The result is a fixed pseudo-random function of the id (Roller et al.'s "random hash"):
balanced in expectation over ids, exactly balanced over all 2^32 ids for a power-of-two E
(fmix32 is a bijection). It needs no vocabulary size.
K > 1: slot k uses seed k and picks index h_k mod (E - k) among the experts not yet taken
by the token's earlier slots, so a token never repeats an expert.
"""

from __future__ import annotations

import torch

from ablate.models.moe.routers.base import Selection
from ablate.registry import SELECTIONS

_M32 = 2**32


def hash_ids(token_ids_T: torch.Tensor, seed: int) -> torch.Tensor:
    """(T,) int token ids -> (T,) int64 32-bit hash values (see the module docstring)."""
    h = (token_ids_T.long() * 2654435761 + seed * 97) % _M32  # < 2^63 for ids < 2^31
    h = ((h ^ (h >> 16)) * 0x85EBCA6B) % _M32  # murmur3 fmix32
    h = ((h ^ (h >> 13)) * 0xC2B2AE35) % _M32
    return h ^ (h >> 16)


@SELECTIONS.register("hash")
class Hash(Selection):
    needs_scores = False
    needs_token_ids = True

    def forward(self, sel_TE, **ctx: torch.Tensor | None) -> torch.Tensor:
        ids_T = ctx.get("token_ids_T")
        if ids_T is None:
            raise ValueError("the hash router needs token ids (MoELayer.forward(x, token_ids_BS))")
        E, K, T = self.n_experts, self.top_k, ids_T.shape[0]
        free_TE = torch.ones(T, E, dtype=torch.bool, device=ids_T.device)
        slots = []
        for k in range(K):
            r_T = hash_ids(ids_T, seed=k) % (E - k)  # rank among the E - k free experts
            # the expert whose running count of free experts reaches r + 1
            pick_TE = (free_TE.long().cumsum(-1) == (r_T + 1).unsqueeze(-1)) & free_TE
            e_T = pick_TE.long().argmax(dim=-1)
            free_TE[torch.arange(T, device=ids_T.device), e_T] = False
            slots.append(e_T)
        return torch.stack(slots, dim=-1)
