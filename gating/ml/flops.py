"""Compute per input, measured with torch.utils.flop_counter (matmuls, convolutions, attention).

dense = trunk + router + every expert; routed = trunk + router + the top-k experts each input is
actually dispatched to. Both are measured by running the real modules on representative inputs,
so routed FLOPs follow the inputs' real routing, not an assumed even split.

The flop counter does not see an EmbeddingBag, so a router's surface features (one learned
vector of E logits per hashed n-gram, averaged) are added by hand: E additions per bucket id
plus E divisions and E additions to the gate's logits, per input (`surface_flops`).
"""
from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
from torch.utils.flop_counter import FlopCounterMode

from experts.ml.trunk import TrunkSet
from gating.ml.moe import expert_view, router_features


def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs of one call of fn (no gradients), as counted by FlopCounterMode."""
    return counted(fn)[0]


def counted(fn: Callable[[], object]) -> tuple[int, object]:
    """FLOPs of one call of fn (no gradients) and what it returned."""
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        out = fn()
    return int(counter.get_total_flops()), out


def surface_flops(router, surface) -> int:
    """FLOPs of the router's surface term on a bag (0 for a router without one)."""
    if router.surface is None or surface is None:
        return 0
    n_experts = router.config.n_experts
    return int(surface.ids.numel()) * n_experts + 2 * len(surface) * n_experts


def moe_compute(
    moe,
    trunks: TrunkSet,
    *,
    trunk_fn: Callable[[int], object] | None = None,
    top_k: int | None = None,
    mix: str | None = None,
    device: torch.device | str = "cpu",
) -> dict[str, float]:
    """Mean FLOPs per input of the MoE over the inputs of `trunks`, dense vs routed.

    Routed is the MoE as served: its router's mix and top_k unless `top_k`/`mix` say otherwise
    (MixtureOfExperts.forward); the experts that ran on an input are the ones counted for it.

    Each input is measured on its own (a batch of one, so padding never inflates either side):
    routed runs only the experts the router picks for it, so a branch expert's own layers
    count only for the inputs routed to it. trunk_fn(i) runs the frozen backbone for input i
    as deep as the model reads (None: the trunk is not counted). Per expert, the report gives
    what it costs dense (its FLOPs on every input) and routed (on the inputs dispatched to it),
    both per input of the sample, and the share of inputs dispatched to it; so
    dense = trunk + router + sum of the experts' dense costs, and likewise routed.
    """
    n = len(trunks)
    if n == 0:
        raise ValueError("need at least one input to measure compute")
    totals = {"trunk": 0.0, "router": 0.0, "dense": 0.0, "routed": 0.0}
    own = [0.0] * moe.n_experts  # each expert's FLOPs, summed over every input
    own_routed = [0.0] * moe.n_experts  # ... over the inputs dispatched to it
    picked = [0] * moe.n_experts  # inputs dispatched to each expert
    was_training = moe.training
    moe.eval()
    layers = moe.router.config.input_layers
    try:
        for i in range(n):
            row = trunks.batch([i], device=device)
            r, bag = router_features(row, layers), row.surface
            if trunk_fn is not None:
                totals["trunk"] += count_flops(lambda i=i: trunk_fn(i))
            by_hand = surface_flops(moe.router, bag)
            totals["router"] += count_flops(lambda r=r, bag=bag: moe.router(r, bag)) + by_hand
            totals["dense"] += count_flops(partial(moe, row, mix="dense", router_input=r)
                                           ) + by_hand
            flops, out = counted(partial(moe, row, top_k=top_k, mix=mix, router_input=r))
            totals["routed"] += flops + by_hand
            chosen = [e for e, _ in out.chosen(0)]
            for e, expert in enumerate(moe.experts):
                view = expert_view(row, expert)
                cost = count_flops(lambda expert=expert, view=view: expert(view))
                own[e] += cost
                if e in chosen:
                    own_routed[e] += cost
                    picked[e] += 1
    finally:
        moe.train(was_training)
    mean = {k: v / n for k, v in totals.items()}
    dense_total = mean["trunk"] + mean["dense"]
    routed_total = mean["trunk"] + mean["routed"]
    return {
        "trunk_flops_per_input": mean["trunk"],
        "router_flops_per_input": mean["router"],
        "dense_flops_per_input": dense_total,
        "routed_flops_per_input": routed_total,
        "reduction": 1.0 - routed_total / dense_total if dense_total else 0.0,
        "n_inputs": n,
        "expert_flops_per_input": [v / n for v in own],  # router order; dense cost
        "expert_routed_flops_per_input": [v / n for v in own_routed],  # routed cost
        "dispatch_share": [c / n for c in picked],  # share of inputs each expert ran on
    }
