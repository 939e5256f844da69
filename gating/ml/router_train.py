"""Train the gating network over frozen experts on cached trunk features.

Optimisation: the experts are frozen and deterministic in eval mode, so each expert's log-probs
on every training (and dev) input are computed once, up front (`cache_expert_log_probs`). An
epoch then only runs the router and mixes the cached expert probabilities with its weights
(`gating.ml.moe.integrate`), which is exactly what MixtureOfExperts.forward computes, without
re-running branch experts' transformer layers every epoch. Final evaluation still goes through
the real MixtureOfExperts forward (routed dispatch).

Why the NLL is taken on the dense mixture by default (train_dense=True): with top-1 routing and
renormalised weights the selected expert's weight is identically 1, so the NLL of the routed
prediction has no gradient with respect to the router at all. The gate therefore learns on the
dense mixture sum_i g_i(x) p_i(y|x) and is evaluated routed at top_k; the entropy term pushes each
g(x) towards one expert so routed and dense predictions agree.
"""
from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from experts.ml.common import ProgressFn, StopFn, check_stop
from experts.ml.surface import LATEST_SURFACE_VERSION, SurfaceBag
from experts.ml.trunk import TrunkSet, experts_logits
from gating.ml.losses import LAMBDA_BAL, LAMBDA_H, LAMBDA_Z, router_objective
from gating.ml.moe import MixtureOfExperts, MoEOutput, gate_weights, integrate, mix_weights
from gating.ml.router import Router, RouterConfig, route, router_probs

logger = logging.getLogger(__name__)


@dataclass
class RouterTrainConfig:
    top_k: int = 1  # experts per input at inference (and for the balance loss's dispatch counts)
    temperature: float = 1.0  # router softmax temperature
    noise_std: float = 1.0  # Shazeer noisy gating scale during training (0 = off)
    mlp_hidden: int = 0  # 0 = linear router
    dropout: float = 0.0  # dropout on router inputs
    lambda_bal: float = LAMBDA_BAL  # Switch load-balancing weight
    lambda_z: float = LAMBDA_Z  # ST-MoE z-loss weight
    lambda_h: float = LAMBDA_H  # MoECollab entropy regulariser weight
    train_dense: bool = True  # NLL on the dense mixture (see module docstring); False = top-k
    epochs: int = 30  # upper bound; early stopping usually ends sooner
    lr: float = 1e-2  # AdamW learning rate
    weight_decay: float = 1e-4  # AdamW weight decay
    batch_size: int = 256  # inputs per step
    patience: int = 4  # epochs without dev improvement before stopping
    seed: int = 0  # seeds init, sampling and noise (inside a forked RNG: global state untouched)
    device: str = "cpu"  # "cpu", "cuda", "cuda:N"
    balanced: bool = True  # draw the same number of inputs from every domain per epoch
    samples_per_domain: int | None = None  # per epoch when balanced; None = largest domain's size
    surface_buckets: int = 0  # > 0: the router also reads the texts' surface features
    surface_version: int = LATEST_SURFACE_VERSION  # of those features (experts.ml.surface)
    # How the served model mixes the experts (gating.ml.mixes.MIXES): kept in the router's
    # config, so every forward serves it; the dev selection scores it (training is the same).
    mix: str = "top_k"

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class RouterData:
    """Router training/dev inputs with the frozen experts' outputs cached once."""

    features: torch.Tensor  # (N, R) what the router reads: pooled states of `layers`
    targets: torch.Tensor  # (N,) union label index of each input
    domains: list[str]  # N domain names (balanced sampling, per-domain dev accuracy)
    expert_log_probs: list[torch.Tensor]  # one (N, C_i) float32 tensor per expert
    layers: tuple[int, ...] = ()  # backbone layers of `features`; () = one pooled input
    surface: SurfaceBag | None = None  # the texts' surface features (surface routers)

    def __len__(self) -> int:
        return self.features.shape[0]


@dataclass
class TrainedRouter:
    router: Router  # best-dev weights, in eval mode, on the training device
    metrics: dict  # best epoch, dev accuracy / loss at it, epochs run, seconds
    history: list[dict] = field(default_factory=list)  # one row per epoch: losses + dev metrics


def cache_expert_log_probs(
    experts: Sequence[nn.Module], trunks: TrunkSet, *, batch_size: int = 256,
    device: str | torch.device = "cpu",
) -> list[torch.Tensor]:
    """log p_i(y|x) of every (frozen, eval) expert on every input: one (N, C_i) CPU tensor each."""
    logits = experts_logits(experts, trunks, batch_size=batch_size, device=device)
    return [torch.log_softmax(x, dim=-1) for x in logits]


def balanced_epoch(domains: Sequence[str], per_domain: int | None, gen: torch.Generator):
    """Shuffled indices with `per_domain` draws from every domain (wrapping small domains)."""
    by_domain: dict[str, list[int]] = {}
    for i, d in enumerate(domains):
        by_domain.setdefault(d, []).append(i)
    n = per_domain or max(len(v) for v in by_domain.values())
    parts = []
    for d in sorted(by_domain):
        rows = torch.tensor(by_domain[d])
        reps = math.ceil(n / len(rows))
        perm = torch.cat([rows[torch.randperm(len(rows), generator=gen)] for _ in range(reps)])
        parts.append(perm[:n])
    idx = torch.cat(parts)
    return idx[torch.randperm(len(idx), generator=gen)]


@torch.no_grad()
def evaluate_cached(
    router: Router, data: RouterData, columns: Sequence[torch.Tensor], n_labels: int, *,
    top_k: int, mix: str = "top_k", domain_of: torch.Tensor | None = None,
    batch_size: int = 1024,
) -> dict:
    """Predictions mixed as `mix` says (gating.ml.mixes.MIXES; domain_of (E,): each expert's domain
    index, for "domain") from cached expert outputs: per-domain accuracy and NLL."""
    router.eval()
    device = router.gate.weight.device
    preds, nll_sum = [], 0.0
    for start in range(0, len(data), batch_size):
        sl = slice(start, start + batch_size)
        logits = router(data.features[sl].to(device), _surface_rows(data, sl, device))
        weights = mix_weights(router_probs(logits, router.config.temperature), top_k=top_k,
                              mix=mix, domain_of=domain_of)
        lps = [lp[sl].to(device) for lp in data.expert_log_probs]
        log_probs = integrate(lps, weights, columns, n_labels)
        target = data.targets[sl].to(device)
        nll_sum += float(-log_probs.gather(1, target[:, None]).sum())
        preds.append(log_probs.argmax(dim=1).cpu())
    pred = torch.cat(preds)
    per_domain: dict[str, float] = {}
    for d in sorted(set(data.domains)):
        mask = torch.tensor([x == d for x in data.domains])
        per_domain[d] = float((pred[mask] == data.targets[mask]).float().mean())
    return {
        "accuracy": sum(per_domain.values()) / max(len(per_domain), 1),  # unweighted over domains
        "nll": nll_sum / max(len(data), 1),
        "per_domain": per_domain,
    }


def train_router(
    cfg: RouterTrainConfig,
    *,
    experts: Sequence[nn.Module],
    train: RouterData,
    dev: RouterData,
    on_progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
) -> TrainedRouter:
    """Fit a Router over frozen experts; keep the weights with the best dev summary accuracy."""
    t0 = time.perf_counter()
    device = torch.device(cfg.device)
    # The MoE is only used for its label space and index maps here; experts stay untouched.
    width = train.features.shape[1]
    shell = MixtureOfExperts(Router(RouterConfig(hidden_size=width, n_experts=len(experts))),
                             experts)
    columns = [c.to(device) for c in shell.columns()]
    n_labels = len(shell.label_space)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(cfg.seed)
        gen = torch.Generator().manual_seed(cfg.seed)
        router = Router(
            RouterConfig(
                hidden_size=width, n_experts=len(experts), top_k=cfg.top_k,
                temperature=cfg.temperature, noise_std=cfg.noise_std,
                mlp_hidden=cfg.mlp_hidden, dropout=cfg.dropout, input_layers=train.layers,
                surface_buckets=cfg.surface_buckets, surface_version=cfg.surface_version,
                mix=cfg.mix,
            )
        )
        if cfg.surface_buckets and (train.surface is None or dev.surface is None):
            raise ValueError("a surface router needs the surface features of its inputs")
        if cfg.surface_buckets and {train.surface.version, dev.surface.version} != {
                cfg.surface_version}:
            raise ValueError(f"a router on surface features version {cfg.surface_version} "
                             f"was given bags of version {train.surface.version} (train) "
                             f"and {dev.surface.version} (dev)")
        router.fit_input_stats(train.features)
        router.to(device)
        # fused: one kernel per step instead of one per parameter group and moment, 11x
        # faster on a surface router's 2^18 x E bucket table on one CPU thread (measured)
        opt = torch.optim.AdamW(router.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay,
                                fused=True)
        best = {"accuracy": -1.0, "nll": math.inf, "epoch": 0}
        best_state = {k: v.detach().clone() for k, v in router.state_dict().items()}
        history: list[dict] = []
        stale = 0
        for epoch in range(1, cfg.epochs + 1):
            if cfg.balanced:
                order = balanced_epoch(train.domains, cfg.samples_per_domain, gen)
            else:
                order = torch.randperm(len(train), generator=gen)
            router.train()
            sums: dict[str, float] = {}
            steps = 0
            for start in range(0, len(order), cfg.batch_size):
                check_stop(should_stop, f"in router epoch {epoch}")
                rows = order[start : start + cfg.batch_size]
                out = _cached_forward(router, train, rows, columns, n_labels, cfg, device)
                loss, parts = router_objective(
                    out, train.targets[rows].to(device), lambda_bal=cfg.lambda_bal,
                    lambda_z=cfg.lambda_z, lambda_h=cfg.lambda_h,
                )
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                for k, v in parts.items():
                    sums[k] = sums.get(k, 0.0) + v
                steps += 1
            row = {"epoch": epoch, **{f"train_{k}": v / max(steps, 1) for k, v in sums.items()}}
            # selected on the model as it will be served
            ev = evaluate_cached(router, dev, columns, n_labels, top_k=cfg.top_k, mix=cfg.mix,
                                 domain_of=shell._domain_of.to(device))
            row.update(dev_accuracy=ev["accuracy"], dev_nll=ev["nll"])
            history.append(row)
            improved = ev["accuracy"] > best["accuracy"] or (
                ev["accuracy"] == best["accuracy"] and ev["nll"] < best["nll"]
            )
            if improved:
                best = {"accuracy": ev["accuracy"], "nll": ev["nll"], "epoch": epoch}
                best_state = {k: v.detach().clone() for k, v in router.state_dict().items()}
                stale = 0
            else:
                stale += 1
            logger.info(
                "router epoch %d: loss %.4f nll %.4f | dev acc %.4f nll %.4f", epoch,
                row["train_total"], row["train_nll"], ev["accuracy"], ev["nll"],
            )
            if on_progress is not None:
                message = f"router epoch {epoch}: dev accuracy {ev['accuracy']:.4f}"
                on_progress(epoch, cfg.epochs, message)
            if stale >= cfg.patience:
                break
    router.load_state_dict(best_state)
    router.eval()
    metrics = {
        "best_epoch": best["epoch"],
        "dev_accuracy": best["accuracy"],
        "dev_nll": best["nll"],
        "epochs_run": len(history),
        "seconds": time.perf_counter() - t0,
    }
    return TrainedRouter(router=router, metrics=metrics, history=history)


def _cached_forward(
    router: Router, data: RouterData, rows: torch.Tensor, columns: Sequence[torch.Tensor],
    n_labels: int, cfg: RouterTrainConfig, device: torch.device,
) -> MoEOutput:
    """MoEOutput of a batch from cached expert log-probs (same math as MixtureOfExperts)."""
    logits = router(data.features[rows].to(device), _surface_rows(data, rows, device))  # (B, E)
    probs, idx, w = route(logits, cfg.top_k, cfg.temperature)
    weights = probs if cfg.train_dense else gate_weights(probs, idx, w)  # (B, E)
    lps = [lp[rows].to(device) for lp in data.expert_log_probs]
    log_probs = integrate(lps, weights, columns, n_labels)  # (B, Y)
    return MoEOutput(log_probs, logits, probs, idx, w)


def _surface_rows(data: RouterData, rows: torch.Tensor | slice, device: torch.device
                  ) -> SurfaceBag | None:
    if data.surface is None:
        return None
    if isinstance(rows, slice):
        rows = torch.arange(len(data))[rows]
    return data.surface.rows(rows).to(device)
