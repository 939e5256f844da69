"""How a gating model mixes its experts; torch-free, so the web process checks a setting
without loading the ML stack."""
from __future__ import annotations

# How the router's probabilities become the experts that run on an input and their weights:
# "top_k" each input's top-k experts, renormalised (sparse, the default); "domain" every expert
# of the input's most probable domain (the router's probabilities summed over a domain's
# experts), renormalised over them: several contributors' experts of one domain are mixed
# instead of one picked; "dense" every expert with the full softmax (the dense reference).
MIXES = ("top_k", "domain", "dense")


def check_mix(mix: str) -> str:
    if mix not in MIXES:
        raise ValueError(f"mix must be one of {', '.join(MIXES)}, got {mix!r}")
    return mix
