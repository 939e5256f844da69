"""Train one expert (head or branch) on one domain from cached backbone features."""
from __future__ import annotations

import copy
import datetime as dt
import logging
import math
import time
from dataclasses import asdict, dataclass, field

import torch
import transformers
from torch import nn

from experts.ml.backbone import Backbone, resolve_device
from experts.ml.common import ProgressFn, StopFn, check_stop
from experts.ml.data import DomainData, subsample
from experts.ml.features import FeatureCache
from experts.ml.modules import ExpertConfig, build_expert
from experts.ml.trunk import TrunkSet, TrunkSpec, expert_logits
from gating.ml.metrics import accuracy, macro_f1

logger = logging.getLogger(__name__)

TRAINER_VERSION = "expert_train/2"  # bump when the training recipe changes what it produces


@dataclass
class ExpertTrainConfig:
    kind: str = "head"  # "head" (MLP on pooled trunk) or "branch" (top layers + MLP)
    epochs: int | None = None  # upper bound; None = 40 for head, 4 for branch, 6 for lora
    # None = by kind: heads train on cached pooled features, where 8x the batch (512) with a
    # sqrt-scaled learning rate (3e-3) is 8x fewer steps for the same dev accuracy (sentiment
    # 0.9274 vs 0.9252); branches run transformer layers per step and keep 64 / 1e-3.
    lr: float | None = None  # AdamW learning rate of the MLP head
    branch_lr: float = 5e-5  # AdamW learning rate of a branch's copied backbone layers
    batch_size: int | None = None  # examples per step, at most 1/8 of the train rows
    weight_decay: float = 0.01  # AdamW weight decay
    patience: int = 5  # epochs without a better dev accuracy before stopping early
    seed: int = 0  # seeds init, shuffling and dropout (in a forked RNG: global state untouched)
    max_train: int | None = None  # stratified subsample of the train split; None = all
    device: str = "auto"  # where the expert trains: "auto", "cpu", "cuda[:n]"
    split_layer: int | None = None  # None: head -> num_layers, branch -> num_layers - 2
    mlp_hidden: int = 256  # width of the MLP head
    dropout: float = 0.1  # MLP head dropout
    lora_r: int = 8  # lora: adapter rank
    lora_alpha: float = 16  # lora: scaling numerator (scale = alpha / r)
    lora_dropout: float = 0.1  # lora: dropout on the adapter's input
    lora_targets: tuple[str, ...] = ("query", "value")  # lora: the attention projections adapted

    def resolved(self, num_layers: int) -> ExpertTrainConfig:
        """Copy with defaults that depend on the kind and the backbone filled in."""
        if self.kind not in ("head", "branch", "lora"):
            raise ValueError(f"kind must be 'head', 'branch' or 'lora', got {self.kind!r}")
        out = copy.copy(self)
        head, lora = self.kind == "head", self.kind == "lora"
        # lora: the whole backbone runs with the adapter: 6 epochs at 2e-3 with warm-up and
        # linear decay (2,000 questions: dev 0.896-0.916 vs 0.81 at 3 epochs of 5e-4; docs/
        # benchmarks.md, "LoRA experts")
        if out.epochs is None:
            out.epochs = 40 if head else 6 if lora else 4
        if out.lr is None:
            out.lr = 3e-3 if head else 2e-3 if lora else 1e-3
        if out.batch_size is None:
            out.batch_size = 512 if head else 32 if lora else 64
        if out.split_layer is None:
            out.split_layer = num_layers if self.kind != "branch" else max(num_layers - 2, 0)
        if lora and out.split_layer != num_layers:
            raise ValueError("a LoRA expert adapts the whole backbone; it has no split layer")
        top = num_layers if self.kind != "branch" else num_layers - 1
        if not 0 <= out.split_layer <= top:
            raise ValueError(f"split_layer for a {self.kind} expert must be in 0..{top}")
        return out


@dataclass
class TrainedExpert:
    """A trained expert with its best-dev weights, metrics and provenance."""

    expert: nn.Module  # eval mode, CPU, float32
    config: ExpertTrainConfig  # resolved config it was trained with
    metrics: dict[str, float]  # dev_accuracy, dev_macro_f1, best_epoch, ...
    history: list[dict[str, float]] = field(default_factory=list)  # one row per epoch
    training: dict = field(default_factory=dict)  # provenance for the artifact manifest


def train_batches(n: int, lengths: torch.Tensor | None, batch_size: int,
                  gen: torch.Generator) -> list[torch.Tensor]:
    """Shuffled row batches of n rows; with (n,) token lengths, sorted inside random windows of
    16 batches so each batch carries little padding."""
    perm = torch.randperm(n, generator=gen)
    if lengths is not None:
        window = batch_size * 16  # little padding, still shuffled
        chunks = [perm[i : i + window] for i in range(0, len(perm), window)]
        perm = torch.cat([c[torch.argsort(lengths[c], descending=True)] for c in chunks])
    batches = list(perm.split(batch_size))
    order = torch.randperm(len(batches), generator=gen).tolist()
    return [batches[i] for i in order]


def dev_metrics(logits: torch.Tensor, gold: torch.Tensor, n_labels: int) -> dict[str, float]:
    """loss (mean cross-entropy), accuracy and macro-F1 of (N, C) logits against gold ids."""
    preds = logits.argmax(dim=-1).tolist()
    return {
        "loss": float(nn.functional.cross_entropy(logits, gold, reduction="mean")),
        "accuracy": accuracy(gold.tolist(), preds),
        "macro_f1": macro_f1(gold.tolist(), preds, list(range(n_labels))),
    }


@torch.no_grad()
def evaluate(expert: nn.Module, trunks: TrunkSet, labels: torch.Tensor, *,
             device: torch.device) -> dict[str, float]:
    """dev_metrics of the expert on one split."""
    return dev_metrics(expert_logits(expert, trunks, device=device), labels,
                       len(expert.config.labels))


class EarlyStopping:
    """Keeps the best-dev snapshot; says when `patience` epochs brought nothing better."""

    def __init__(self, patience: int) -> None:
        self.patience = patience
        self.best: dict = {"accuracy": -1.0}
        self.stale = 0

    def update(self, epoch: int, dev: dict, snapshot) -> bool:
        """Record an epoch's dev metrics (snapshot() copies the weights); True = stop now."""
        if dev["accuracy"] > self.best["accuracy"]:
            self.best = {**dev, "epoch": epoch, "state": snapshot()}
            self.stale = 0
        else:
            self.stale += 1
        return self.stale >= self.patience


def train_expert(
    cfg: ExpertTrainConfig, *, backbone: Backbone, cache: FeatureCache, domain: DomainData,
    on_progress: ProgressFn | None = None, should_stop: StopFn | None = None,
) -> TrainedExpert:
    """Train an expert with AdamW + cross-entropy, early-stopped on dev accuracy."""
    cfg = cfg.resolved(backbone.num_layers)
    device = resolve_device(cfg.device)
    t0 = time.perf_counter()

    def encoding_progress(done: float, total: float, message: str) -> None:
        check_stop(should_stop, "while encoding features")
        if on_progress is not None:
            on_progress(done, total, message)

    train_rows = domain.train
    if cfg.max_train is not None:
        train_rows = subsample(train_rows, cfg.max_train, seed=cfg.seed)
    if not train_rows or not domain.dev:
        raise ValueError(f"domain {domain.name!r} needs train and dev rows to train an expert")
    # Small sets need more, smaller steps per epoch to fit: at least 8 batches an epoch.
    cfg.batch_size = min(cfg.batch_size, max(8, len(train_rows) // 8))
    if cfg.kind == "lora":
        from training.ml.lora_train import train_lora

        devices = [device.index or 0] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(cfg.seed)
            expert, history, best = train_lora(
                cfg, backbone=backbone, domain=domain, train_rows=train_rows,
                on_progress=on_progress, should_stop=should_stop, device=device)
        return _trained(cfg, expert.to("cpu"), domain, train_rows, history, best, t0)
    branch = cfg.kind == "branch"
    layer = cfg.split_layer
    spec = TrunkSpec.of(pooled=[layer], tokens=[layer] if branch else [])
    index = {label: i for i, label in enumerate(domain.labels)}
    feats = {
        name: (cache.load([t for t, _ in rows], spec, on_progress=encoding_progress),
               torch.tensor([index[y] for _, y in rows], dtype=torch.long))
        for name, rows in (("train", train_rows), ("dev", domain.dev))
    }
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(cfg.seed)
        expert_cfg = ExpertConfig(
            kind=cfg.kind, domain=domain.name, labels=list(domain.labels),
            hidden_size=backbone.hidden_size, split_layer=cfg.split_layer,
            n_branch_layers=backbone.num_layers - cfg.split_layer if branch else 0,
            mlp_hidden=cfg.mlp_hidden, dropout=cfg.dropout,
        )
        expert = build_expert(expert_cfg, backbone if branch else None).to(device)
        history, best = _fit(expert, feats, cfg, device, on_progress, should_stop)
    expert.load_state_dict(best["state"])
    return _trained(cfg, expert.to("cpu").eval(), domain, train_rows, history, best, t0)


def _trained(cfg: ExpertTrainConfig, expert: nn.Module, domain: DomainData, train_rows,
             history: list[dict], best: dict, t0: float) -> TrainedExpert:
    metrics = {
        "dev_accuracy": best["accuracy"], "dev_macro_f1": best["macro_f1"],
        "dev_loss": best["loss"], "best_epoch": float(best["epoch"]),
        "n_train": float(len(train_rows)), "n_dev": float(len(domain.dev)),
        "train_seconds": round(time.perf_counter() - t0, 2),
    }
    logger.info(
        "trained %s expert for %s: dev accuracy %.4f, macro-F1 %.4f (epoch %d)", cfg.kind,
        domain.name, best["accuracy"], best["macro_f1"], best["epoch"],
    )
    training = {
        "data": {"domain": domain.name, "description": domain.description},
        "n_train": len(train_rows), "n_dev": len(domain.dev), "epochs_run": len(history),
        "config": asdict(cfg), "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "code_version": TRAINER_VERSION, "torch": torch.__version__,
        "transformers": transformers.__version__, "history": history,
    }
    return TrainedExpert(
        expert=expert, config=cfg, metrics=metrics, history=history, training=training
    )


def _fit(
    expert: nn.Module, feats: dict[str, tuple[TrunkSet, torch.Tensor]], cfg: ExpertTrainConfig,
    device: torch.device, on_progress: ProgressFn | None, should_stop: StopFn | None,
) -> tuple[list[dict[str, float]], dict]:
    """The epoch loop; returns per-epoch history and the best-dev snapshot."""
    groups = [{"params": expert.head.parameters(), "lr": cfg.lr}]
    if hasattr(expert, "layers"):
        groups.append({"params": expert.layers.parameters(), "lr": cfg.branch_lr})
    opt = torch.optim.AdamW(groups, weight_decay=cfg.weight_decay)
    gen = torch.Generator().manual_seed(cfg.seed)
    train, labels = feats["train"]
    steps_per_epoch = math.ceil(len(train) / cfg.batch_size)
    total = cfg.epochs * steps_per_epoch
    report_every = max(1, steps_per_epoch // 4)
    history: list[dict[str, float]] = []
    stopping = EarlyStopping(cfg.patience)
    step = 0
    for epoch in range(1, cfg.epochs + 1):
        expert.train()
        running = 0.0
        for rows in train_batches(len(train), train.lengths(), cfg.batch_size, gen):
            check_stop(should_stop, f"in expert training epoch {epoch}")
            logits = expert(train.batch(rows, device=device).for_expert(expert))  # (B, C)
            loss = nn.functional.cross_entropy(logits.float(), labels[rows].to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            running += loss.item() * len(rows)
            step += 1
            if on_progress is not None and step % report_every == 0:
                on_progress(step, total, f"epoch {epoch}/{cfg.epochs}: loss {loss.item():.4f}")
        dev = evaluate(expert, *feats["dev"], device=device)
        row = {"epoch": epoch, "train_loss": running / len(train), "dev_loss": dev["loss"],
               "dev_accuracy": dev["accuracy"], "dev_macro_f1": dev["macro_f1"]}
        history.append(row)
        logger.info("epoch %d: train loss %.4f, dev accuracy %.4f", epoch, row["train_loss"],
                    dev["accuracy"])
        stop = stopping.update(epoch, dev, lambda: {
            k: v.detach().to("cpu", copy=True) for k, v in expert.state_dict().items()})
        if on_progress is not None:
            on_progress(epoch * steps_per_epoch, total,
                        f"epoch {epoch}/{cfg.epochs}: dev accuracy {dev['accuracy']:.4f}")
        if stop:
            logger.info("early stop after epoch %d (best %d)", epoch, stopping.best["epoch"])
            break
    return history, stopping.best
