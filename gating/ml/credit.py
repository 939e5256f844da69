"""Shapley credit of experts in a mixture, Django-free.

v(S) = summary accuracy (unweighted mean over domains) of the mixture served by the router
renormalised over the coalition S, mixed as the model serves (top-k within S, or every member of
the row's most probable domain, or all of S densely); v(empty) = 0. Each expert's log-probs and
the router's probabilities are computed once on the evaluation rows; every coalition's
predictions are mixed from that cache (as `integrate` does), so 2^n coalitions cost no forward.
"""
from __future__ import annotations

import itertools
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from gating.ml.moe import MixtureOfExperts, integrate, mix_weights, router_features
from gating.ml.stats import Z95

EXACT_MAX = 10  # exact Shapley (2^n coalitions) up to this many experts
DEFAULT_PERMUTATIONS = 200  # permutation-sampling budget above EXACT_MAX


@dataclass
class CachedSet:
    """One domain's evaluation rows as every expert and the router see them."""

    domain_cols: torch.Tensor  # (C_d,) union indices of the domain's labels (unused in scoring)
    targets: torch.Tensor  # (N,) union label index
    probs: torch.Tensor  # (N, E) router softmax over all experts, float32
    log_probs: list[torch.Tensor]  # per expert: (N, C_i) log p_i(y|x), float32


@torch.no_grad()
def cache_outputs(moe: MixtureOfExperts, sets, *, batch_size: int = 128,
                  device: str | torch.device = "cpu") -> list[CachedSet]:
    """Each expert's log-probs and the router's probabilities on every evaluation row, once."""
    moe.eval()
    temperature = moe.router.config.temperature
    out = []
    for s in sets:
        n = len(s.targets)
        probs = torch.empty(n, moe.n_experts)
        lps = [torch.empty(n, len(c)) for c in moe.columns()]
        for rows, batch in s.trunks.batches(batch_size, device=device):
            logits = moe.router(router_features(batch, moe.router.config.input_layers),
                                batch.surface)
            probs[rows] = torch.softmax(logits.float() / temperature, dim=-1).cpu()
            every = torch.arange(len(rows), device=logits.device)
            for i, lp in moe._run(batch, {i: every for i in range(moe.n_experts)}).items():
                lps[i][rows] = lp.float().cpu()
        out.append(CachedSet(domain_cols=torch.tensor(moe.label_space.domain_indices(s.domain)),
                             targets=s.targets, probs=probs, log_probs=lps))
    return out


def coalition_accuracy(cached: Sequence[CachedSet], members: Sequence[int], *, top_k: int,
                       columns: Sequence[torch.Tensor], n_labels: int, mix: str = "top_k",
                       domain_of: torch.Tensor | None = None) -> float:
    """Summary accuracy of the router renormalised over `members`, mixed among them as `mix`
    says (domain_of: every expert's domain index, for mix="domain")."""
    if not members:
        return 0.0
    idx = torch.tensor(sorted(members), dtype=torch.long)
    accs = []
    for c in cached:
        weights = mix_weights(  # (N, |S|), members only
            c.probs[:, idx], top_k=top_k, mix=mix,
            domain_of=None if domain_of is None else domain_of[idx])
        lp = integrate([c.log_probs[i] for i in idx.tolist()], weights,
                       [columns[i] for i in idx.tolist()], n_labels)  # (N, Y)
        accs.append(float((lp.argmax(dim=1) == c.targets).float().mean()) if len(c.targets)
                    else 0.0)
    return sum(accs) / len(accs) if accs else 0.0


def shapley(value: Callable[[frozenset[int]], float], n: int, *,
            groups: dict[str, list[int]] | None = None, exact_max: int = EXACT_MAX,
            permutations: int = DEFAULT_PERMUTATIONS, seed: int = 0) -> dict:
    """Shapley values of n players under `value` (memoised), and sums over groups of players.

    Exact for n <= exact_max: phi_i = sum_{S not containing i} |S|!(n-|S|-1)!/n! (v(S+i) - v(S)).
    Above: the mean marginal contribution over `permutations` random orders (fixed seed), with a
    95 % normal interval mean ± 1.96 sd/sqrt(m); a group's interval uses the per-permutation sums.
    Values sum to v(all) - v(empty) (efficiency) in both cases.
    """
    memo: dict[frozenset[int], float] = {}

    def v(s: frozenset[int]) -> float:
        if s not in memo:
            memo[s] = value(s)
        return memo[s]

    groups = groups or {}
    if n <= exact_max:
        fact = [math.factorial(j) for j in range(n + 1)]
        phi = [0.0] * n
        for size in range(n):
            weight = fact[size] * fact[n - size - 1] / fact[n]
            for combo in itertools.combinations(range(n), size):
                s = frozenset(combo)
                base = v(s)
                for i in range(n):
                    if i not in s:
                        phi[i] += weight * (v(s | {i}) - base)
        by_group = {g: sum(phi[i] for i in m) for g, m in groups.items()}
        return {"method": "exact", "permutations": None, "coalitions": len(memo),
                "values": phi, "ci95": [[p, p] for p in phi], "groups": by_group,
                "groups_ci95": {g: [x, x] for g, x in by_group.items()}}
    rng = random.Random(seed)
    marg = torch.zeros(permutations, n, dtype=torch.float64)  # (m, n)
    for r in range(permutations):
        order = list(range(n))
        rng.shuffle(order)
        s: frozenset[int] = frozenset()
        prev = v(s)
        for i in order:
            s = s | {i}
            cur = v(s)
            marg[r, i] = cur - prev
            prev = cur

    def mean_ci(col: torch.Tensor) -> tuple[float, list[float]]:
        mean = float(col.mean())
        se = float(col.std(unbiased=True)) / math.sqrt(len(col)) if len(col) > 1 else 0.0
        return mean, [mean - Z95 * se, mean + Z95 * se]

    stats = [mean_ci(marg[:, i]) for i in range(n)]
    gstats = {g: mean_ci(marg[:, list(m)].sum(dim=1)) if m else (0.0, [0.0, 0.0])
              for g, m in groups.items()}
    return {"method": "sampled", "permutations": permutations, "coalitions": len(memo),
            "values": [m for m, _ in stats], "ci95": [ci for _, ci in stats],
            "groups": {g: m for g, (m, _) in gstats.items()},
            "groups_ci95": {g: ci for g, (_, ci) in gstats.items()}}


def moe_shapley(moe: MixtureOfExperts, sets, *, keys: Sequence[str], top_k: int,
                mix: str | None = None,
                groups: dict[str, list[str]] | None = None, exact_max: int = EXACT_MAX,
                permutations: int = DEFAULT_PERMUTATIONS, seed: int = 0,
                batch_size: int = 128, device: str | torch.device = "cpu") -> dict:
    """Shapley credit of each expert (by key) and each group of keys in the summary accuracy,
    the coalitions mixed as `mix` says (default: the router's own mix)."""
    cached = cache_outputs(moe, sets, batch_size=batch_size, device=device)
    columns = [c.cpu() for c in moe.columns()]
    n_labels = len(moe.label_space)
    index = {k: i for i, k in enumerate(keys)}
    mix, domain_of = mix or moe.router.config.mix, moe._domain_of.cpu()
    res = shapley(
        lambda s: coalition_accuracy(cached, list(s), top_k=top_k, columns=columns,
                                     n_labels=n_labels, mix=mix, domain_of=domain_of),
        len(keys), exact_max=exact_max, permutations=permutations, seed=seed,
        groups={g: [index[k] for k in m if k in index] for g, m in (groups or {}).items()},
    )
    return {
        "method": res["method"], "permutations": res["permutations"],
        "coalitions": res["coalitions"],
        "values": dict(zip(keys, res["values"], strict=True)),
        "ci95": dict(zip(keys, res["ci95"], strict=True)),
        "groups": res["groups"], "groups_ci95": res["groups_ci95"],
    }
