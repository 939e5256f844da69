"""The shared trunk: what the frozen backbone hands to experts and the router.

The backbone runs once per input, up to the deepest layer anything needs. Each consumer taps
the layer it was built on: a head expert reads the mean-pooled states of its split layer, a
branch expert the token states of its split layer (and runs its own layers from there), the
router the pooled states of its input layers. A `TrunkSpec` says which layers a set of
consumers needs; a `LayeredBatch` holds them for one batch, a `TrunkSet` for N cached inputs.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from experts.ml.surface import LATEST_SURFACE_VERSION, SurfaceBag


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over real tokens, in float32 so fp16/bf16 states do not lose precision in the sum."""
    m = mask.to(device=hidden.device, dtype=torch.float32).unsqueeze(-1)  # (B, T, 1)
    summed = (hidden.to(torch.float32) * m).sum(dim=1)  # (B, H)
    return summed / m.sum(dim=1).clamp(min=1.0)


@dataclass
class TrunkBatch:
    """One layer of the trunk for one batch: what a single expert reads."""

    pooled: torch.Tensor  # (B, H) mean-pooled states, what heads read
    hidden: torch.Tensor | None = None  # (B, T, H) token states (branch experts only)
    mask: torch.Tensor | None = None  # (B, T) 1 = real token, 0 = padding
    input_ids: torch.Tensor | None = None  # (B, T) token ids (LoRA experts run the backbone)
    surface: SurfaceBag | None = None  # the texts' surface features, for a router reading them


def collate_trunk(
    items: Sequence[torch.Tensor], *, pooled: torch.Tensor | None = None,
    device: torch.device | str | None = None, dtype: torch.dtype = torch.float32,
) -> TrunkBatch:
    """Right-pad per-text (T_i, H) token states into a TrunkBatch; pooled defaults to their mean."""
    hidden, mask = pad_states(items, device=device, dtype=dtype)
    pooled = mean_pool(hidden, mask) if pooled is None else pooled.to(device)
    return TrunkBatch(pooled=pooled.to(dtype), hidden=hidden, mask=mask)


def pad_states(
    items: Sequence[torch.Tensor], *, device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T, H) right-padded states and their (B, T) mask from per-text (T_i, H) states."""
    width = max(t.shape[0] for t in items)
    hidden = torch.zeros((len(items), width, items[0].shape[1]), dtype=dtype)  # (B, T, H)
    mask = torch.zeros((len(items), width), dtype=torch.long)  # (B, T)
    for i, t in enumerate(items):
        hidden[i, : t.shape[0]] = t.to(dtype)
        mask[i, : t.shape[0]] = 1
    return hidden.to(device), mask.to(device)


def pad_ids(ids: Sequence[Sequence[int]], *, device: torch.device | str | None = None,
            pad_id: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T) right-padded token ids and their (B, T) mask."""
    width = max(len(x) for x in ids)
    input_ids = torch.full((len(ids), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(ids), width), dtype=torch.long)
    for i, row in enumerate(ids):
        input_ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        mask[i, : len(row)] = 1
    return input_ids.to(device), mask.to(device)


def slice_trunk(trunk: TrunkBatch, rows: torch.Tensor, *, tokens: bool) -> TrunkBatch:
    """The rows of a TrunkBatch; token states only if wanted, trimmed to the rows' longest input."""
    pooled = trunk.pooled.index_select(0, rows)  # (n, H)
    hidden = mask = input_ids = None
    if tokens or trunk.input_ids is not None:
        if trunk.mask is None or (tokens and trunk.hidden is None):
            raise ValueError("an expert needs token states but the trunk batch has none")
        mask = trunk.mask.index_select(0, rows)  # (n, T)
        length = int(mask.sum(dim=1).max().item()) if rows.numel() else 0
        mask = mask[:, :length]  # (n, T')
        if tokens:
            hidden = trunk.hidden.index_select(0, rows)[:, :length]  # (n, T', H)
        if trunk.input_ids is not None:
            input_ids = trunk.input_ids.index_select(0, rows)[:, :length]  # (n, T')
    return dataclasses.replace(trunk, pooled=pooled, hidden=hidden, mask=mask,
                               input_ids=input_ids)


def expert_tap(expert: nn.Module) -> tuple[int, bool]:
    """(split layer, needs token states) of an expert: where it taps the trunk."""
    return int(expert.config.split_layer), bool(getattr(expert, "needs_tokens", False))


def needs_ids(expert: nn.Module) -> bool:
    """True for experts that run the backbone themselves (LoRA) and read the token ids."""
    return bool(getattr(expert, "needs_ids", False))


@dataclass(frozen=True)
class TrunkSpec:
    """Which backbone layers a set of consumers reads: pooled states and token states."""

    pooled: tuple[int, ...] = ()  # layers whose mean-pooled states are needed, sorted
    tokens: tuple[int, ...] = ()  # layers whose token states are needed, sorted
    ids: bool = False  # token ids and mask (for experts that run the backbone themselves)
    # hash buckets of the text's surface features (experts.ml.surface) a router reads; 0 = none
    surface: int = 0
    surface_version: int = LATEST_SURFACE_VERSION  # feature set (experts.ml.surface)

    @classmethod
    def of(cls, *, pooled: Iterable[int] = (), tokens: Iterable[int] = (), ids: bool = False,
           surface: int = 0, surface_version: int = LATEST_SURFACE_VERSION) -> TrunkSpec:
        # without surface features the version means nothing: one spec for "no bag"
        version = int(surface_version) if surface else LATEST_SURFACE_VERSION
        return cls(tuple(sorted(set(pooled))), tuple(sorted(set(tokens))), ids, int(surface),
                   version)

    @classmethod
    def for_experts(cls, experts: Iterable[nn.Module], *, router_layers: Iterable[int] = (),
                    router_surface: int = 0,
                    router_surface_version: int = LATEST_SURFACE_VERSION) -> TrunkSpec:
        """What the experts (at their split layers) and a router (at its layers and, with
        `router_surface` buckets, the text's surface features of `router_surface_version`)
        read."""
        pooled, tokens, ids = set(router_layers), set(), False
        for expert in experts:
            if needs_ids(expert):
                ids = True
                continue
            layer, needs_tokens = expert_tap(expert)
            (tokens if needs_tokens else pooled).add(layer)
        return cls.of(pooled=pooled, tokens=tokens, ids=ids, surface=router_surface,
                      surface_version=router_surface_version)

    @property
    def depth(self) -> int:
        """How many backbone layers the trunk must run (0 = embeddings only)."""
        return max((*self.pooled, *self.tokens), default=0)

    @property
    def all_pooled(self) -> tuple[int, ...]:
        """Pooled states are kept for token layers too: they are free once the states exist."""
        return tuple(sorted(set(self.pooled) | set(self.tokens)))


def surface_of(texts: Sequence[str], spec: TrunkSpec) -> SurfaceBag | None:
    """The surface features of `texts` when `spec` asks for them (the encoders' one rule)."""
    if not spec.surface:
        return None
    return SurfaceBag.of_texts(texts, spec.surface, spec.surface_version)


@dataclass
class LayeredBatch:
    """The trunk's output for one batch: pooled states per layer, token states where needed."""

    pooled: dict[int, torch.Tensor]  # layer -> (B, H) float32
    hidden: dict[int, torch.Tensor] = field(default_factory=dict)  # layer -> (B, T, H)
    mask: torch.Tensor | None = None  # (B, T), shared by every layer's token states and ids
    input_ids: torch.Tensor | None = None  # (B, T) when the spec asked for ids
    surface: SurfaceBag | None = None  # the texts' surface features when the spec asked

    def __len__(self) -> int:
        if self.input_ids is not None:
            return self.input_ids.shape[0]
        return next(iter(self.pooled.values())).shape[0]

    def ids_view(self) -> TrunkBatch:
        """What an expert that runs the backbone itself reads: the token ids and their mask."""
        if self.input_ids is None or self.mask is None:
            raise ValueError("the trunk batch has no token ids")
        pooled = next(iter(self.pooled.values()), None)
        if pooled is None:  # no layer is read: a placeholder of the right batch size
            pooled = self.input_ids.new_zeros((self.input_ids.shape[0], 0), dtype=torch.float32)
        return TrunkBatch(pooled=pooled, mask=self.mask, input_ids=self.input_ids)

    def view(self, layer: int, *, tokens: bool = False) -> TrunkBatch:
        """The TrunkBatch of one layer, as an expert tapping that layer reads it."""
        if layer not in self.pooled:
            raise ValueError(f"the trunk batch has no layer {layer} (has {sorted(self.pooled)})")
        if not tokens:
            return TrunkBatch(pooled=self.pooled[layer])
        if layer not in self.hidden or self.mask is None:
            raise ValueError(f"the trunk batch has no token states of layer {layer}")
        return TrunkBatch(pooled=self.pooled[layer], hidden=self.hidden[layer], mask=self.mask)

    def for_expert(self, expert: nn.Module) -> TrunkBatch:
        if needs_ids(expert):
            return self.ids_view()
        layer, tokens = expert_tap(expert)
        return self.view(layer, tokens=tokens)

    def features(self, layers: Sequence[int]) -> torch.Tensor:
        """(B, len(layers) * H) pooled states of `layers` side by side: the router's input."""
        return torch.cat([self.pooled[layer] for layer in layers], dim=1)


@dataclass
class TrunkSet:
    """Trunk features of N inputs (from the feature cache), served as LayeredBatch batches."""

    pooled: dict[int, torch.Tensor]  # layer -> (N, H) float32
    tokens: dict[int, list[torch.Tensor]] = field(default_factory=dict)  # layer -> N x (T_i, H)
    ids: list[list[int]] | None = None  # N token id lists, when the spec asked for ids
    surface: SurfaceBag | None = None  # the texts' surface features, when the spec asked

    def __len__(self) -> int:
        if self.ids is not None:
            return len(self.ids)
        if self.surface is not None and not self.pooled:
            return len(self.surface)
        return next(iter(self.pooled.values())).shape[0]

    def features(self, layers: Sequence[int]) -> torch.Tensor:
        """(N, len(layers) * H) pooled states of `layers` side by side."""
        return torch.cat([self.pooled[layer] for layer in layers], dim=1)

    def lengths(self) -> torch.Tensor | None:
        """(N,) token counts when token states or ids are held, else None."""
        if self.tokens:
            return torch.tensor([t.shape[0] for t in next(iter(self.tokens.values()))])
        if self.ids is not None:
            return torch.tensor([len(x) for x in self.ids])
        return None

    def batch(self, rows: Sequence[int] | torch.Tensor, *, device: torch.device | str = "cpu",
              tokens: bool = True) -> LayeredBatch:
        """The LayeredBatch of `rows`; token states padded only if held (and wanted)."""
        idx = torch.as_tensor(rows, dtype=torch.long)
        pooled = {k: v.index_select(0, idx).to(device) for k, v in self.pooled.items()}
        surface = self.surface.rows(idx).to(device) if self.surface is not None else None
        if not tokens or (not self.tokens and self.ids is None):
            return LayeredBatch(pooled=pooled, surface=surface)
        hidden, mask, input_ids = {}, None, None
        for layer, states in self.tokens.items():
            hidden[layer], mask = pad_states([states[i] for i in idx.tolist()], device=device)
        if self.ids is not None:
            input_ids, mask = pad_ids([self.ids[i] for i in idx.tolist()], device=device)
        return LayeredBatch(pooled=pooled, hidden=hidden, mask=mask, input_ids=input_ids,
                            surface=surface)

    def batches(self, batch_size: int, *, device: torch.device | str = "cpu", tokens: bool = True
                ) -> Iterator[tuple[torch.Tensor, LayeredBatch]]:
        """(rows, LayeredBatch) covering every input; sorted by length when tokens are padded."""
        order = torch.arange(len(self))
        lengths = self.lengths() if tokens else None
        if lengths is not None:
            # Length bucketing keeps padding (and wasted branch compute) small.
            order = torch.argsort(lengths, descending=True, stable=True)
        for start in range(0, len(self), batch_size):
            rows = order[start : start + batch_size]
            yield rows, self.batch(rows, device=device, tokens=tokens)

    def subset(self, rows: Sequence[int] | torch.Tensor) -> TrunkSet:
        idx = torch.as_tensor(rows, dtype=torch.long)
        keep = idx.tolist()
        return TrunkSet(pooled={k: v.index_select(0, idx) for k, v in self.pooled.items()},
                        tokens={k: [v[i] for i in keep] for k, v in self.tokens.items()},
                        ids=[self.ids[i] for i in keep] if self.ids is not None else None,
                        surface=self.surface.rows(idx) if self.surface is not None else None)

    @classmethod
    def concat(cls, sets: Sequence[TrunkSet]) -> TrunkSet:
        """One set holding the inputs of `sets` in order (they must hold the same layers)."""
        first = sets[0]
        return cls(pooled={k: torch.cat([s.pooled[k] for s in sets]) for k in first.pooled},
                   tokens={k: [t for s in sets for t in s.tokens[k]] for k in first.tokens},
                   ids=[x for s in sets for x in s.ids] if first.ids is not None else None,
                   surface=(SurfaceBag.concat([s.surface for s in sets])
                            if first.surface is not None else None))


@torch.no_grad()
def experts_logits(
    experts: Sequence[nn.Module], trunks: TrunkSet, *, batch_size: int = 256,
    device: torch.device | str = "cpu",
) -> list[torch.Tensor]:
    """Float32 (N, C_i) CPU logits of each expert (in eval mode) on every input of `trunks`.

    The one predict loop for experts: validation scores, expert training's dev metrics, the
    router's cached expert outputs and the benchmark's oracle all read it.
    """
    out = [torch.empty(len(trunks), len(e.config.labels)) for e in experts]
    tokens = any(expert_tap(e)[1] or needs_ids(e) for e in experts)
    for e in experts:
        e.eval()
    for rows, batch in trunks.batches(batch_size, device=device, tokens=tokens):
        for i, expert in enumerate(experts):
            out[i][rows] = expert(batch.for_expert(expert)).float().cpu()
    return out


def expert_logits(expert: nn.Module, trunks: TrunkSet, **kwargs) -> torch.Tensor:
    """(N, C) logits of one expert: experts_logits for a single expert."""
    return experts_logits([expert], trunks, **kwargs)[0]
