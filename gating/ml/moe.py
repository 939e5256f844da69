"""Integration of heterogeneous experts: router + experts over a union `domain:label` space.

p(y|x) = sum_{i in top-k(x)} g_i(x) p_i(y|x), with p_i zero outside expert i's labels (MoECollab,
arXiv 2503.12592). Experts that are not selected for a row never see it: each expert runs once on
the rows routed to it (index_select), so compute grows with k, not with the number of experts.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from experts.ml.trunk import LayeredBatch, TrunkBatch, expert_tap, needs_ids, slice_trunk
from gating.ml.mixes import check_mix
from gating.ml.router import Router, route

# Mixture probabilities are clamped here before the log: a label no selected expert covers has
# p = 0 exactly, and log(0) would turn the NLL and its gradients into inf/NaN.
PROB_FLOOR = 1e-9


@dataclass(frozen=True)
class LabelSpace:
    """Union of `domain:label` names in a stable order (first appearance)."""

    names: tuple[str, ...]

    @classmethod
    def from_domains(cls, domains: Iterable[tuple[str, Sequence[str]]]) -> LabelSpace:
        names: list[str] = []
        seen: set[str] = set()
        for domain, labels in domains:
            for label in labels:
                name = join_label(domain, label)
                if name not in seen:
                    seen.add(name)
                    names.append(name)
        return cls(tuple(names))

    @classmethod
    def from_experts(cls, experts: Iterable[nn.Module]) -> LabelSpace:
        return cls.from_domains((e.config.domain, e.config.labels) for e in experts)

    def __len__(self) -> int:
        return len(self.names)

    def index(self, domain: str, label: str) -> int:
        return self._lookup[join_label(domain, label)]

    def indices(self, domain: str, labels: Sequence[str]) -> list[int]:
        """Union index of each of a domain's labels, in the given order."""
        return [self.index(domain, label) for label in labels]

    def domain_of(self, index: int) -> str:
        return split_label(self.names[index])[0]

    def domain_indices(self, domain: str) -> list[int]:
        return [i for i, name in enumerate(self.names) if split_label(name)[0] == domain]

    @property
    def _lookup(self) -> dict[str, int]:
        # Built lazily and cached on the frozen instance.
        cache = self.__dict__.get("_lookup_cache")
        if cache is None:
            cache = {name: i for i, name in enumerate(self.names)}
            object.__setattr__(self, "_lookup_cache", cache)
        return cache


def join_label(domain: str, label: str) -> str:
    if ":" in domain:
        raise ValueError(f"domain names may not contain ':' ({domain!r})")
    return f"{domain}:{label}"


def split_label(name: str) -> tuple[str, str]:
    domain, _, label = name.partition(":")
    return domain, label


@dataclass
class MoEOutput:
    log_probs: torch.Tensor  # (B, Y) log p(y|x) over the union label space, float32
    router_logits: torch.Tensor  # (B, E) raw router logits (noisy in training)
    probs: torch.Tensor  # (B, E) full float32 softmax of the router
    topk_idx: torch.Tensor  # (B, k) selected experts
    topk_w: torch.Tensor  # (B, k) their renormalised weights
    # Set by MixtureOfExperts.forward (None from router training's cached path):
    weights: torch.Tensor | None = None  # (B, E) each expert's weight in the mix (0: not run)
    runs: torch.Tensor | None = None  # (B, E) bool, which experts ran on each row

    def chosen(self, row: int) -> list[tuple[int, float]]:
        """(expert, weight) of the experts that ran on one row, heaviest first."""
        idx = self.runs[row].nonzero().squeeze(1).tolist()
        w = self.weights[row].tolist()
        return sorted(((i, w[i]) for i in idx), key=lambda t: (-t[1], t[0]))


def gate_weights(probs: torch.Tensor, topk_idx: torch.Tensor, topk_w: torch.Tensor
                 ) -> torch.Tensor:
    """(B, E) weight of every expert per row: its renormalised top-k weight, 0 elsewhere."""
    return torch.zeros_like(probs).scatter(1, topk_idx, topk_w.to(probs.dtype))  # (B, E)


def domain_mix(probs: torch.Tensor, domain_of: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """Mix within the most probable domain: probs (B, E) the router's softmax, domain_of (E,)
    each expert's domain index. Returns (B, E) bool, the experts of each row's domain (the
    probabilities summed over a domain's experts, argmax), and (B, E) their probabilities
    renormalised over them (0 elsewhere)."""
    per_domain = probs.new_zeros(probs.shape[0], int(domain_of.max()) + 1).index_add(
        1, domain_of, probs)  # (B, D)
    inside = domain_of[None, :] == per_domain.argmax(dim=1)[:, None]  # (B, E)
    w = probs * inside
    return inside, w / w.sum(dim=1, keepdim=True).clamp_min(PROB_FLOOR)


def mix_weights(probs: torch.Tensor, *, top_k: int, mix: str = "top_k",
                domain_of: torch.Tensor | None = None) -> torch.Tensor:
    """(N, E) each expert's weight from the router's probabilities (N, E) over the experts at
    hand (all, or a coalition's), as MixtureOfExperts.forward mixes (gating.ml.mixes.MIXES),
    for the cached-outputs paths; domain_of: (E,) each expert's domain index, for mix="domain"."""
    if mix == "dense":
        return probs / probs.sum(dim=1, keepdim=True).clamp_min(1e-30)
    if mix == "domain":
        if domain_of is None:
            raise ValueError('mix="domain" needs each expert\'s domain')
        return domain_mix(probs, domain_of)[1]
    w, pos = probs.topk(min(top_k, probs.shape[1]), dim=1)  # (N, k)
    w = w / w.sum(dim=1, keepdim=True).clamp_min(1e-30)
    return torch.zeros_like(probs).scatter(1, pos, w)


def integrate(
    expert_log_probs: Sequence[torch.Tensor],
    weights: torch.Tensor,
    columns: Sequence[torch.Tensor],
    n_labels: int,
) -> torch.Tensor:
    """log sum_i w_i p_i(y) from every expert's log-probs on every row (cached-features path).

    expert_log_probs[i]: (B, C_i); weights: (B, E); columns[i]: (C_i,) union indices.
    Returns (B, Y) float32 log-probs, floored at PROB_FLOOR.
    """
    mix = weights.new_zeros(weights.shape[0], n_labels, dtype=torch.float32)  # (B, Y)
    for i, (lp, cols) in enumerate(zip(expert_log_probs, columns, strict=True)):
        contrib = weights[:, i : i + 1].float() * lp.float().exp()  # (B, C_i)
        mix = mix.index_add(1, cols, contrib)
    return mix.clamp_min(PROB_FLOOR).log()


def router_features(trunk: LayeredBatch | TrunkBatch, layers: Sequence[int]) -> torch.Tensor:
    """(B, R) what a router with these input layers reads from a trunk batch."""
    if isinstance(trunk, LayeredBatch):
        if not layers:
            raise ValueError("a router over a layered trunk needs its input layers")
        return trunk.features(layers)
    return trunk.pooled


def expert_view(trunk: LayeredBatch | TrunkBatch, expert: nn.Module) -> TrunkBatch:
    """The single-layer batch an expert reads: its split layer (token states only if needed)."""
    if isinstance(trunk, LayeredBatch):
        return trunk.for_expert(expert)
    if needs_ids(expert):
        return trunk
    if not expert_tap(expert)[1]:
        return dataclasses.replace(trunk, hidden=None, mask=None, input_ids=None)
    return trunk


class MixtureOfExperts(nn.Module):
    """Router + experts (each with .config.domain/.config.labels) over their union label space."""

    def __init__(
        self, router: Router, experts: Sequence[nn.Module], label_space: LabelSpace | None = None
    ) -> None:
        super().__init__()
        if router.config.n_experts != len(experts):
            raise ValueError(
                f"router has {router.config.n_experts} outputs for {len(experts)} experts"
            )
        self.router = router
        self.experts = nn.ModuleList(experts)
        self.label_space = label_space or LabelSpace.from_experts(experts)
        for i, expert in enumerate(experts):
            cols = self.label_space.indices(expert.config.domain, list(expert.config.labels))
            # Buffers so the index maps follow .to(device); not saved with the weights.
            self.register_buffer(f"_cols_{i}", torch.tensor(cols, dtype=torch.long), False)
        # Each expert's domain as an index (sorted names), for mixing within a domain.
        names = sorted({e.config.domain for e in experts})
        self.register_buffer("_domain_of", torch.tensor(
            [names.index(e.config.domain) for e in experts], dtype=torch.long), False)
        # LoRA experts share banks (one PeftModel each): children here so .to(device) moves
        # them; each bank runs once per forward for every row routed to any of its adapters.
        banks = {id(e.bank): e.bank for e in experts if needs_ids(e)}
        self.banks = nn.ModuleList(banks.values())

    @property
    def n_experts(self) -> int:
        return len(self.experts)

    def columns(self) -> list[torch.Tensor]:
        """Union indices of each expert's labels, (C_i,) each."""
        return [getattr(self, f"_cols_{i}") for i in range(self.n_experts)]

    def expert_domains(self) -> list[str]:
        return [e.config.domain for e in self.experts]

    def expert_log_probs(self, i: int, view: TrunkBatch) -> torch.Tensor:
        """log p_i(y|x) of expert i on all rows of its trunk view, float32 (B, C_i)."""
        return torch.log_softmax(self.experts[i](view).float(), dim=-1)

    def _run(self, trunk, rows_of: dict[int, torch.Tensor]) -> dict[int, torch.Tensor]:
        """log p_i(y|x) of each expert i on its rows: (n_i, C_i) each.

        Head and branch experts run on their rows' slice of the trunk. LoRA experts of one
        bank run together: one backbone forward over all their rows with a per-row adapter
        (PeftModel's adapter_names), then each expert's head on its own rows.
        """
        out: dict[int, torch.Tensor] = {}
        grouped: dict[int, list[int]] = {}
        for i, rows in rows_of.items():
            expert = self.experts[i]
            if needs_ids(expert):
                grouped.setdefault(id(expert.bank), []).append(i)
                continue
            sub = slice_trunk(expert_view(trunk, expert), rows, tokens=expert_tap(expert)[1])
            out[i] = self.expert_log_probs(i, sub)
        for members in grouped.values():
            first = self.experts[members[0]]
            rows = torch.cat([rows_of[i] for i in members])
            names = [self.experts[i].key for i in members for _ in range(len(rows_of[i]))]
            sub = slice_trunk(expert_view(trunk, first), rows, tokens=False)
            pooled = first.bank(sub.input_ids, sub.mask, names)  # (sum n_i, H)
            for i, part in zip(members, pooled.split([len(rows_of[i]) for i in members]),
                               strict=True):
                out[i] = torch.log_softmax(self.experts[i].head(part).float(), dim=-1)
        return out

    def forward(
        self,
        trunk,
        *,
        top_k: int | None = None,
        mix: str | None = None,
        exclude: Sequence[int] = (),
        router_input: torch.Tensor | None = None,
    ) -> MoEOutput:
        """Route, run the selected experts on their rows only, mix in the union label space.

        trunk: a LayeredBatch (each expert reads its split layer, the router its input
        layers) or, when every expert reads one layer, that layer's TrunkBatch.
        mix: which experts run on a row and with what weight (gating.ml.mixes.MIXES): "top_k"
        the row's top-k experts, renormalised; "domain" every expert of the row's most probable
        domain (the router's probabilities summed over a domain's experts), weighted by its
        probability renormalised over them (one expert per domain: the same as top-1);
        "dense" every expert with the full softmax weights (the dense reference). Default: the
        router's own mix, or "top_k" when the call asks for a top_k.
        exclude: experts removed from the pool; the router renormalises over the rest
        (leave-one-out contribution).
        router_input: (B, R) precomputed router features (else read from the trunk).
        """
        if mix is None:
            mix = "top_k" if top_k is not None else self.router.config.mix
        check_mix(mix)
        if router_input is None:
            router_input = router_features(trunk, self.router.config.input_layers)
        logits = self.router(router_input, trunk.surface)  # (B, E)
        gate_logits = logits
        if exclude:
            gate_logits = logits.float().clone()
            gate_logits[:, list(exclude)] = float("-inf")
        k = min(top_k or self.router.config.top_k, self.n_experts - len(exclude))
        probs, topk_idx, topk_w = route(gate_logits, k, self.router.config.temperature)
        columns = self.columns()
        batch = router_input.shape[0]
        mix_probs = probs.new_zeros(batch, len(self.label_space))  # (B, Y) float32
        if mix == "dense":  # every expert on every row, weighted by the full softmax
            runs = torch.ones_like(probs, dtype=torch.bool)
            runs[:, list(exclude)] = False
            weights = probs
        elif mix == "domain":
            runs, weights = domain_mix(probs, self._domain_of)  # excluded experts have p = 0
            runs[:, list(exclude)] = False
        else:  # each row's top-k experts, with their renormalised weights
            runs = torch.zeros_like(probs, dtype=torch.bool).scatter(1, topk_idx, True)
            weights = gate_weights(probs, topk_idx, topk_w)
        chosen = {}  # expert -> (its rows, their weights); an expert with no row does not run
        for i in range(self.n_experts):
            rows = runs[:, i].nonzero().squeeze(1)  # (n_i,)
            if rows.numel():
                chosen[i] = (rows, weights[:, i].index_select(0, rows))
        for i, lp in self._run(trunk, {i: rows for i, (rows, _) in chosen.items()}).items():
            rows, w = chosen[i]
            index = (rows[:, None], columns[i][None, :])
            mix_probs = mix_probs.index_put(index, w[:, None] * lp.exp(), accumulate=True)
        return MoEOutput(
            log_probs=mix_probs.clamp_min(PROB_FLOOR).log(),
            router_logits=logits,
            probs=probs,
            topk_idx=topk_idx,
            topk_w=topk_w,
            weights=weights * runs,
            runs=runs,
        )
