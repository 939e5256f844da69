"""Compute per input, measured with torch.utils.flop_counter (matmuls, convolutions, attention).

dense = trunk + router + every expert; routed = trunk + router + the top-k experts each input is
actually dispatched to. Both are measured by running the real modules on representative inputs,
so routed FLOPs follow the inputs' real routing, not an assumed even split.
"""
from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
from torch.utils.flop_counter import FlopCounterMode

from gating.ml.moe import slice_trunk


def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs of one call of fn (no gradients), as counted by FlopCounterMode."""
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def moe_compute(
    moe,
    trunk,
    *,
    trunk_fn: Callable[[int], object] | None = None,
    top_k: int | None = None,
    router_input: torch.Tensor | None = None,
) -> dict[str, float]:
    """Mean FLOPs per input of the MoE over the rows of `trunk`, dense vs routed.

    Each input is measured on its own (batch of one, token states trimmed to its length), so
    padding never inflates either side. trunk_fn(i) runs the backbone layers below the split
    for input i (None: the trunk is not counted). router_input: (B, R) router features when the
    router does not read trunk.pooled.
    """
    batch = trunk.pooled.shape[0]
    if batch == 0:
        raise ValueError("need a non-empty batch to measure compute")
    tokens = trunk.hidden is not None
    totals = {"trunk": 0.0, "router": 0.0, "dense": 0.0, "routed": 0.0}
    was_training = moe.training
    moe.eval()
    try:
        for i in range(batch):
            row = slice_trunk(trunk, torch.tensor([i], device=trunk.pooled.device), tokens=tokens)
            r = router_input[i : i + 1] if router_input is not None else row.pooled
            if trunk_fn is not None:
                totals["trunk"] += count_flops(lambda i=i: trunk_fn(i))
            totals["router"] += count_flops(lambda r=r: moe.router(r))
            dense = partial(moe, row, dense=True, router_input=r)
            routed = partial(moe, row, top_k=top_k, router_input=r)
            totals["dense"] += count_flops(dense)
            totals["routed"] += count_flops(routed)
    finally:
        moe.train(was_training)
    mean = {k: v / batch for k, v in totals.items()}
    dense_total = mean["trunk"] + mean["dense"]
    routed_total = mean["trunk"] + mean["routed"]
    return {
        "trunk_flops_per_input": mean["trunk"],
        "router_flops_per_input": mean["router"],
        "dense_flops_per_input": dense_total,
        "routed_flops_per_input": routed_total,
        "reduction": 1.0 - routed_total / dense_total if dense_total else 0.0,
        "n_inputs": batch,
    }
