"""Cached trunk features of a set of inputs, served as TrunkBatch mini-batches."""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch

from experts.ml.modules import TrunkBatch, collate_trunk


@dataclass
class TrunkSet:
    """Pooled trunk output of N inputs, plus per-input token states for branch experts."""

    pooled: torch.Tensor  # (N, H) float32 pooled trunk output (what the router and heads read)
    tokens: list[torch.Tensor] | None = None  # N tensors (T_i, H) at the split layer, or None
    router: torch.Tensor | None = None  # (N, R) what the router reads, if not `pooled`

    def __len__(self) -> int:
        return self.pooled.shape[0]

    def router_input(self, rows: Sequence[int] | torch.Tensor) -> torch.Tensor | None:
        """(B, R) router features of `rows`, or None when the router reads `pooled`."""
        if self.router is None:
            return None
        return self.router.index_select(0, torch.as_tensor(rows, dtype=torch.long))

    def batch(
        self, rows: Sequence[int] | torch.Tensor, *, device: torch.device | str = "cpu",
        tokens: bool | None = None,
    ) -> TrunkBatch:
        """The TrunkBatch of `rows`; token states padded only if present (and wanted)."""
        idx = torch.as_tensor(rows, dtype=torch.long)
        pooled = self.pooled.index_select(0, idx)  # (B, H)
        want = self.tokens is not None if tokens is None else tokens
        if not want:
            return TrunkBatch(pooled=pooled.to(device))
        if self.tokens is None:
            raise ValueError("token states were requested but this TrunkSet has none")
        items = [self.tokens[i] for i in idx.tolist()]
        return collate_trunk(items, pooled=pooled, device=device)

    def batches(
        self, batch_size: int, *, device: torch.device | str = "cpu", tokens: bool | None = None
    ) -> Iterator[tuple[torch.Tensor, TrunkBatch]]:
        """(rows, TrunkBatch) in input order; rows sorted by length first when tokens are padded."""
        order = torch.arange(len(self))
        if self.tokens is not None and tokens is not False:
            # Length bucketing keeps padding (and wasted branch compute) small.
            lengths = torch.tensor([t.shape[0] for t in self.tokens])
            order = torch.argsort(lengths, descending=True, stable=True)
        for start in range(0, len(self), batch_size):
            rows = order[start : start + batch_size]
            yield rows, self.batch(rows, device=device, tokens=tokens)

    def subset(self, rows: Sequence[int]) -> TrunkSet:
        idx = torch.as_tensor(list(rows), dtype=torch.long)
        tokens = [self.tokens[i] for i in idx.tolist()] if self.tokens is not None else None
        router = self.router.index_select(0, idx) if self.router is not None else None
        return TrunkSet(pooled=self.pooled.index_select(0, idx), tokens=tokens, router=router)
