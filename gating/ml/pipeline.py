"""Gating models end to end, Django-free: build, train, bundle, evaluate and serve a mixture.

A gating *bundle* is one platform-written safetensors file holding the router, the same router
trained without regularisation (for comparison) and every expert's weights, with the configs in
its metadata. Workers write it after loading the experts' validated artifacts; the web process
only ever opens bundles, never a user's upload.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
from safetensors.torch import load as load_safetensors_bytes
from safetensors.torch import save as save_safetensors_bytes
from torch import nn

from experts.ml.artifact import load_expert
from experts.ml.backbone import Backbone, mean_pool
from experts.ml.features import FeatureCache
from experts.ml.modules import ExpertConfig, TrunkBatch, build_expert
from gating.ml.evaluate import EvalSet, balanced_routing, evaluate_moe, score_union
from gating.ml.flops import moe_compute
from gating.ml.moe import LabelSpace, MixtureOfExperts
from gating.ml.router import Router, RouterConfig
from gating.ml.trunk import TrunkSet
from training.ml.common import TrainingStopped
from training.ml.router_train import (
    RouterData,
    RouterTrainConfig,
    TrainedRouter,
    cache_expert_log_probs,
    train_router,
)

logger = logging.getLogger(__name__)

ProgressFn = Callable[[int, int, str], None]
StopFn = Callable[[], bool]
Example = tuple[str, str]  # (text, label)
BUNDLE_FORMAT = 1
MAX_BUNDLE_BYTES = 2 * 1024**3


class GatingError(ValueError):
    """Experts or data cannot form a gating model; the message says why."""


@dataclass
class ExpertSource:
    """Where one expert version's artifact lives and which platform domain it serves."""

    key: str  # stable name of the expert version (the platform's version id)
    domain: str  # platform domain name; overrides the manifest's, so the label space matches
    manifest: Path
    weights: Path


@dataclass
class DomainSplits:
    """One domain's rows: train for the router, dev for early stopping, test for scoring."""

    name: str
    labels: list[str]
    train: list[Example] = field(default_factory=list)
    dev: list[Example] = field(default_factory=list)  # empty: a held-out slice of train is used
    test: list[Example] = field(default_factory=list)  # empty: scored on dev instead


@dataclass
class GatingTrainConfig:
    top_k: int = 1  # experts per input at inference
    temperature: float = 1.0  # router softmax temperature
    noise_std: float = 1.0  # Shazeer noisy gating scale in training (0 = off)
    mlp_hidden: int = 0  # 0 = linear router
    lambda_bal: float = 0.01  # Switch load-balancing weight
    lambda_z: float = 1e-3  # ST-MoE z-loss weight
    lambda_h: float = 0.01  # MoECollab entropy regulariser weight
    epochs: int = 30  # upper bound; early stopping usually ends sooner
    lr: float = 3e-3  # AdamW learning rate
    batch_size: int = 256  # inputs per step
    patience: int = 4  # epochs without dev improvement before stopping
    seed: int = 0  # seeds sampling, init and noise
    samples_per_domain: int | None = None  # router inputs drawn per domain per epoch
    max_train_per_domain: int | None = 5000  # cap on each domain's router training rows
    dev_fraction: float = 0.1  # share of train held out when a domain has no dev split
    compare_unregularized: bool = True  # also train lambda_bal = lambda_h = 0 for the report
    device: str = "cpu"  # "cpu", "cuda", "cuda:N"

    def router_config(self) -> RouterTrainConfig:
        return RouterTrainConfig(
            top_k=self.top_k, temperature=self.temperature, noise_std=self.noise_std,
            mlp_hidden=self.mlp_hidden, lambda_bal=self.lambda_bal, lambda_z=self.lambda_z,
            lambda_h=self.lambda_h, epochs=self.epochs, lr=self.lr, batch_size=self.batch_size,
            patience=self.patience, seed=self.seed, device=self.device,
            samples_per_domain=self.samples_per_domain,
        )


@dataclass
class GatingModel:
    """A loaded mixture: experts (router order), their keys, the routers and the label space."""

    moe: MixtureOfExperts  # with the regularised router
    keys: list[str]  # expert keys in router order
    split_layer: int  # backbone layer whose output the router and experts read
    fingerprint: str  # backbone the experts were trained on
    unregularized: Router | None = None  # same router trained with lambda_bal = lambda_h = 0
    config: dict = field(default_factory=dict)  # GatingTrainConfig as a dict

    @property
    def needs_tokens(self) -> bool:
        return any(getattr(e, "needs_tokens", False) for e in self.moe.experts)


@dataclass
class TrainResult:
    model: GatingModel
    metrics: dict  # best epoch, dev accuracy, ... of each router
    curves: dict  # {"regularized": [...epochs], "unregularized": [...]}


def _stage(on_progress: ProgressFn | None, should_stop: StopFn | None, done: float, total: float,
           message: str) -> None:
    if should_stop is not None and should_stop():
        raise TrainingStopped(f"stopped before: {message}")
    if on_progress is not None:
        on_progress(done, total, message)


def load_experts(
    sources: Sequence[ExpertSource], *, fingerprint: str
) -> tuple[list[nn.Module], int]:
    """Load and check every expert artifact; they must share one backbone and one split layer."""
    if not sources:
        raise GatingError("no experts to combine")
    experts, splits = [], set()
    for src in sources:
        module, manifest = load_expert(src.manifest, src.weights, expected_fingerprint=fingerprint)
        module.config.domain = src.domain
        module.eval().requires_grad_(False)
        experts.append(module)
        splits.add(int(manifest["split_layer"]))
    if len(splits) > 1:
        raise GatingError(f"experts read different backbone layers {sorted(splits)}; "
                          "a gating model needs one shared trunk")
    return experts, splits.pop()


def _trunks(cache: FeatureCache, texts: list[str], *, layer: int, tokens: bool,
            on_progress: ProgressFn | None = None) -> TrunkSet:
    states = cache.tokens(texts, layer=layer, on_progress=on_progress) if tokens else None
    return TrunkSet(pooled=cache.pooled(texts, layer=layer, on_progress=on_progress),
                    tokens=states)


def _router_data(experts, space: LabelSpace, rows: dict[str, list[Example]], cache, *,
                 layer: int, tokens: bool, device) -> RouterData:
    names = [d for d in rows for _ in rows[d]]
    texts = [t for d in rows for t, _ in rows[d]]
    targets = torch.tensor([space.index(d, y) for d in rows for _, y in rows[d]])
    trunks = _trunks(cache, texts, layer=layer, tokens=tokens)
    return RouterData(pooled=trunks.pooled, targets=targets, domains=names,
                      expert_log_probs=cache_expert_log_probs(experts, trunks, device=device))


def split_rows(domains: Sequence[DomainSplits], cfg: GatingTrainConfig
               ) -> tuple[dict[str, list[Example]], dict[str, list[Example]]]:
    """Router train and dev rows per domain; dev is a held-out slice of train when missing."""
    rng = random.Random(cfg.seed)
    train, dev = {}, {}
    for d in domains:
        rows = list(d.train)
        if not rows:
            raise GatingError(f"domain {d.name!r} has no training rows")
        if d.dev:
            dev[d.name] = list(d.dev)
        else:
            rng.shuffle(rows)
            n_dev = max(1, int(len(rows) * cfg.dev_fraction))
            if len(rows) - n_dev < 1:
                raise GatingError(f"domain {d.name!r} has too few rows to hold out a dev slice")
            dev[d.name], rows = rows[:n_dev], rows[n_dev:]
        cap = cfg.max_train_per_domain
        train[d.name] = rows if cap is None or len(rows) <= cap else rng.sample(rows, cap)
    return train, dev


def train_gating(
    cfg: GatingTrainConfig, *, backbone: Backbone, cache: FeatureCache,
    sources: Sequence[ExpertSource], domains: Sequence[DomainSplits],
    on_progress: ProgressFn | None = None, should_stop: StopFn | None = None,
) -> TrainResult:
    """Load the experts, cache their outputs on the domains' rows and fit the router(s)."""
    device = torch.device(cfg.device)
    steps = 5.0
    _stage(on_progress, should_stop, 0, steps, "loading experts")
    experts, layer = load_experts(sources, fingerprint=backbone.fingerprint)
    if len(experts) < 2:
        raise GatingError("a gating model needs at least 2 experts to route between")
    if not 1 <= cfg.top_k <= len(experts):
        raise GatingError(f"top_k must be in 1..{len(experts)}, got {cfg.top_k}")
    experts = [e.to(device) for e in experts]
    space = LabelSpace.from_domains((d.name, d.labels) for d in domains)
    for e, src in zip(experts, sources, strict=True):
        unknown = [y for y in e.config.labels if f"{e.config.domain}:{y}" not in space.names]
        if unknown:
            raise GatingError(f"expert {src.key} outputs labels {unknown} that domain "
                              f"{src.domain!r} does not have")
    tokens = any(getattr(e, "needs_tokens", False) for e in experts)
    train_rows, dev_rows = split_rows(domains, cfg)

    def encoding(done: int, total: int, message: str) -> None:
        _stage(on_progress, should_stop, 1 + done / max(total, 1), steps, message)

    _stage(on_progress, should_stop, 1, steps, "encoding training texts")
    for rows in (train_rows, dev_rows):
        texts = [t for d in rows for t, _ in rows[d]]
        _trunks(cache, texts, layer=layer, tokens=tokens, on_progress=encoding)
    _stage(on_progress, should_stop, 2, steps, "running experts on training texts")
    kw = {"layer": layer, "tokens": tokens, "device": device}
    train = _router_data(experts, space, train_rows, cache, **kw)
    dev = _router_data(experts, space, dev_rows, cache, **kw)

    def epochs(base: float) -> ProgressFn:
        return lambda done, total, msg: _stage(on_progress, None, base + done / total, steps, msg)

    rcfg = cfg.router_config()
    _stage(on_progress, should_stop, 3, steps, "training the router")
    reg = train_router(rcfg, experts=experts, train=train, dev=dev, on_progress=epochs(3),
                       should_stop=should_stop)
    unreg: TrainedRouter | None = None
    if cfg.compare_unregularized:
        _stage(on_progress, should_stop, 4, steps, "training the unregularised router")
        unreg = train_router(replace(rcfg, lambda_bal=0.0, lambda_h=0.0), experts=experts,
                             train=train, dev=dev, on_progress=epochs(4),
                             should_stop=should_stop)
    moe = MixtureOfExperts(reg.router, experts, space).to("cpu").eval()
    model = GatingModel(
        moe=moe, keys=[s.key for s in sources], split_layer=layer,
        fingerprint=backbone.fingerprint,
        unregularized=unreg.router.to("cpu").eval() if unreg else None, config=asdict(cfg),
    )
    metrics = {"regularized": reg.metrics, "unregularized": unreg.metrics if unreg else None,
               "n_train": len(train), "n_dev": len(dev)}
    curves = {"regularized": reg.history, "unregularized": unreg.history if unreg else []}
    _stage(on_progress, None, steps, steps, "router trained")
    return TrainResult(model=model, metrics=metrics, curves=curves)


# --- bundle ------------------------------------------------------------------------------------

def _expert_meta(expert: nn.Module) -> dict:
    cfg: ExpertConfig = expert.config
    return asdict(cfg)


def bundle_bytes(model: GatingModel) -> bytes:
    """The safetensors bytes of a gating model (float32 tensors, configs in the metadata)."""
    tensors: dict[str, torch.Tensor] = {}
    for k, v in model.moe.router.state_dict().items():
        tensors[f"router.{k}"] = v
    if model.unregularized is not None:
        for k, v in model.unregularized.state_dict().items():
            tensors[f"unregularized.{k}"] = v
    for i, expert in enumerate(model.moe.experts):
        for k, v in expert.state_dict().items():
            tensors[f"experts.{i}.{k}"] = v
    tensors = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in tensors.items()}
    meta = {
        "format": BUNDLE_FORMAT,
        "router": model.moe.router.config.to_dict(),
        "experts": [_expert_meta(e) for e in model.moe.experts],
        "keys": model.keys,
        "label_space": list(model.moe.label_space.names),
        "split_layer": model.split_layer,
        "fingerprint": model.fingerprint,
        "has_unregularized": model.unregularized is not None,
        "config": model.config,
    }
    return save_safetensors_bytes(tensors, metadata={"gating": json.dumps(meta)})


def save_bundle(model: GatingModel, path: str | Path) -> str:
    """Write the bundle atomically; returns its sha256."""
    data = bundle_bytes(model)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{uuid.uuid4().hex}-{path.name}")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return hashlib.sha256(data).hexdigest()


def load_bundle(path: str | Path, *, expected_fingerprint: str | None = None) -> GatingModel:
    """Rebuild a gating model from a platform-written bundle (safetensors, nothing unpickled)."""
    path = Path(path)
    if path.stat().st_size > MAX_BUNDLE_BYTES:
        raise GatingError(f"gating bundle {path} is larger than {MAX_BUNDLE_BYTES} bytes")
    data = path.read_bytes()
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + n])
    meta = json.loads(header.get("__metadata__", {}).get("gating", "null") or "null")
    if not isinstance(meta, dict) or meta.get("format") != BUNDLE_FORMAT:
        raise GatingError(f"{path} is not a gating bundle of format {BUNDLE_FORMAT}")
    if expected_fingerprint is not None and meta["fingerprint"] != expected_fingerprint:
        raise GatingError(f"bundle built on backbone {meta['fingerprint']}, "
                          f"this process runs {expected_fingerprint}")
    tensors = load_safetensors_bytes(data)

    def part(prefix: str) -> dict[str, torch.Tensor]:
        return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}

    router = Router(RouterConfig(**meta["router"]))
    router.load_state_dict(part("router."), strict=True)
    experts = []
    for i, cfg in enumerate(meta["experts"]):
        expert = build_expert(ExpertConfig(**cfg))
        expert.load_state_dict(part(f"experts.{i}."), strict=True)
        experts.append(expert.eval().requires_grad_(False))
    unreg = None
    if meta["has_unregularized"]:
        unreg = Router(RouterConfig(**meta["router"]))
        unreg.load_state_dict(part("unregularized."), strict=True)
        unreg.eval()
    space = LabelSpace(tuple(meta["label_space"]))
    moe = MixtureOfExperts(router.eval(), experts, space).eval()
    return GatingModel(moe=moe, keys=list(meta["keys"]), split_layer=int(meta["split_layer"]),
                       fingerprint=meta["fingerprint"], unregularized=unreg,
                       config=meta.get("config", {}))


# --- evaluation --------------------------------------------------------------------------------

def _eval_sets(model: GatingModel, domains: Sequence[DomainSplits], cache: FeatureCache
               ) -> tuple[list[EvalSet], dict[str, str]]:
    space = model.moe.label_space
    sets, used = [], {}
    for d in domains:
        rows, used[d.name] = (d.test, "test") if d.test else (d.dev, "dev")
        if not rows:
            raise GatingError(f"domain {d.name!r} has neither a test nor a dev split to score on")
        texts = [t for t, _ in rows]
        trunks = _trunks(cache, texts, layer=model.split_layer, tokens=model.needs_tokens)
        targets = torch.tensor([space.index(d.name, y) for _, y in rows])
        sets.append(EvalSet(domain=d.name, trunks=trunks, targets=targets))
    return sets, used


def _routing_matrix(model: GatingModel, sets: Sequence[EvalSet], preds) -> dict:
    """domain -> expert key -> share of the domain's dispatches that go to the expert."""
    out = {}
    for s, p in zip(sets, preds, strict=True):
        counts = torch.bincount(p.topk_idx.reshape(-1), minlength=model.moe.n_experts).double()
        share = counts / counts.sum().clamp_min(1)
        out[s.domain] = {k: float(share[i]) for i, k in enumerate(model.keys)}
    return out


def evaluate_gating(
    model: GatingModel, *, backbone: Backbone, cache: FeatureCache,
    domains: Sequence[DomainSplits], on_progress: ProgressFn | None = None,
    should_stop: StopFn | None = None, flops_per_domain: int = 4,
    credit_groups: dict[str, list[str]] | None = None,
) -> dict:
    """The evaluation report: accuracy, routing health, compute and leave-one-out credit.

    credit (per expert key) = summary accuracy - summary accuracy with that expert removed and
    the router renormalised over the rest; credit_groups (e.g. contributor -> their experts)
    get the same leave-group-out drop.
    """
    t0 = time.perf_counter()
    moe = model.moe.eval()
    n = moe.n_experts
    steps = 4.0 + n
    _stage(on_progress, should_stop, 0, steps, "encoding evaluation texts")
    sets, used = _eval_sets(model, domains, cache)
    _stage(on_progress, should_stop, 1, steps, "scoring the routed mixture")
    k = moe.router.config.top_k
    scores, preds = evaluate_moe(moe, sets, top_k=k)
    routing = balanced_routing(moe, sets, preds, expert_names=model.keys)
    dense_scores, _ = evaluate_moe(moe, sets, dense=True)
    report: dict = {
        "eval_split": used,
        "n_eval": {s.domain: len(s.targets) for s in sets},
        "domains": scores["domains"],
        "summary": scores["summary"],
        "dense": dense_scores,
        "routing": routing,
        "routing_matrix": _routing_matrix(model, sets, preds),
        "experts": [{"key": key, "domain": e.config.domain}
                    for key, e in zip(model.keys, moe.experts, strict=True)],
    }
    _stage(on_progress, should_stop, 2, steps, "scoring the unregularised router")
    if model.unregularized is not None:
        unreg = MixtureOfExperts(model.unregularized, list(moe.experts), moe.label_space).eval()
        u_scores, u_preds = evaluate_moe(unreg, sets, top_k=k)
        report["unregularized"] = {
            "summary": u_scores["summary"], "domains": u_scores["domains"],
            "routing": balanced_routing(unreg, sets, u_preds, expert_names=model.keys),
        }
    _stage(on_progress, should_stop, 3, steps, "measuring compute")
    report["compute"] = _compute(model, backbone, cache, domains, flops_per_domain)
    base = report["summary"]["accuracy"]
    groups = {key: [key] for key in model.keys}
    steps += len(credit_groups or {})
    loo = _leave_out(model, sets, groups, on_progress, should_stop, start=4, steps=steps)
    report["accuracy_without"] = loo
    report["credit"] = {key: base - acc for key, acc in loo.items()}
    if credit_groups:
        loo_groups = _leave_out(model, sets, credit_groups, on_progress, should_stop,
                                start=4 + n, steps=steps)
        report["credit_by_contributor"] = {g: base - acc for g, acc in loo_groups.items()}
    report["seconds"] = round(time.perf_counter() - t0, 2)
    _stage(on_progress, None, steps, steps, "evaluation done")
    return report


def _leave_out(model: GatingModel, sets: Sequence[EvalSet], groups: dict[str, list[str]],
               on_progress, should_stop, *, start: float, steps: float) -> dict[str, float]:
    """Summary accuracy with each group of experts removed (0.0 when nothing would remain)."""
    moe, k = model.moe, model.moe.router.config.top_k
    out = {}
    for j, (name, keys) in enumerate(groups.items()):
        _stage(on_progress, should_stop, start + j, steps, f"leave-one-out: without {name}")
        exclude = [i for i, key in enumerate(model.keys) if key in keys]
        if len(exclude) >= moe.n_experts:
            out[name] = 0.0
            continue
        preds = [_predict_excluding(moe, s.trunks, exclude=exclude,
                                    top_k=min(k, moe.n_experts - len(exclude))) for s in sets]
        out[name] = score_union(sets, preds, moe.label_space)["summary"]["accuracy"]
    return out


@torch.no_grad()
def _predict_excluding(moe: MixtureOfExperts, trunks: TrunkSet, *, exclude: list[int],
                       top_k: int, batch_size: int = 256) -> torch.Tensor:
    """(N,) union predictions with some experts removed; the router renormalises over the rest."""
    pred = torch.empty(len(trunks), dtype=torch.long)
    needs = any(getattr(e, "needs_tokens", False) for e in moe.experts)
    for rows, batch in trunks.batches(batch_size, tokens=needs):
        out = moe(batch, top_k=top_k, exclude=exclude)
        pred[rows] = out.log_probs.argmax(dim=1)
    return pred


def _compute(model: GatingModel, backbone: Backbone, cache: FeatureCache,
             domains: Sequence[DomainSplits], per_domain: int) -> dict:
    rng = random.Random(0)
    texts = []
    for d in domains:
        pool = [t for t, _ in (d.test or d.dev)]
        texts.extend(rng.sample(pool, min(per_domain, len(pool))))
    trunks = _trunks(cache, texts, layer=model.split_layer, tokens=model.needs_tokens)
    batch = trunks.batch(range(len(texts)), tokens=model.needs_tokens)
    return moe_compute(model.moe, batch, top_k=model.moe.router.config.top_k,
                       trunk_fn=lambda i: backbone.encode([texts[i]], layer=model.split_layer))


# --- serving -----------------------------------------------------------------------------------

def fast_cpu_bf16() -> bool:
    """True when this CPU runs bfloat16 matmuls natively (AMX), where bf16 is ~3x faster."""
    init_amx = getattr(torch._C._cpu, "_init_amx", None)
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported()) and bool(
            init_amx and init_amx())
    except (AttributeError, RuntimeError):
        return False


def prepare_for_serving(backbone: Backbone, *, dtype: str = "auto") -> str:
    """Put a CPU backbone in its fastest inference dtype; returns the dtype's name.

    bfloat16 keeps the float32 exponent range, so pooled features stay within ~1e-2 of the
    float32 ones (cosine 1.0000 on the shared data) while AMX runs the matmuls ~3x faster.
    The router and the experts stay float32: pooling casts back before they run.
    """
    if backbone.device.type != "cpu":
        return str(backbone.dtype).removeprefix("torch.")
    if dtype == "auto":
        dtype = "bfloat16" if fast_cpu_bf16() else "float32"
    if dtype not in ("float32", "bfloat16"):
        raise ValueError(f"serving dtype must be auto, float32 or bfloat16, got {dtype!r}")
    target = getattr(torch, dtype)
    backbone.model.to(dtype=target)
    backbone.dtype = target
    return dtype


class Predictor:
    """Backbone trunk + gating model for online predictions; one per process, inference only."""

    def __init__(self, backbone: Backbone, model: GatingModel, *, expert_labels: Sequence[str]
                 | None = None, batch_size: int = 32) -> None:
        if backbone.fingerprint != model.fingerprint:
            raise GatingError("the gating model was built on another backbone")
        self.backbone = backbone
        self.model = model
        self.expert_labels = list(expert_labels or model.keys)
        self.batch_size = batch_size  # texts per forward; sorted by length to limit padding

    @torch.inference_mode()
    def trunk(self, texts: Sequence[str]) -> tuple[list[int], list[TrunkBatch]]:
        """(order, batches): trunk batches of length-sorted texts."""
        bb = self.backbone
        ids = bb.tokenize(texts)
        order = sorted(range(len(texts)), key=lambda i: len(ids[i]), reverse=True)
        batches = []
        for b in range(0, len(order), self.batch_size):
            idx = order[b : b + self.batch_size]
            input_ids, mask = bb.pad([ids[i] for i in idx])
            hidden = bb.embed_tokens(input_ids, mask)  # (B, T, H)
            hidden = bb.run_layers(hidden, mask, 0, self.model.split_layer)
            pooled = mean_pool(hidden, mask)  # (B, H)
            if self.model.needs_tokens:
                batches.append(TrunkBatch(pooled=pooled, hidden=hidden.float(), mask=mask))
            else:
                batches.append(TrunkBatch(pooled=pooled))
        return order, batches

    @torch.inference_mode()
    def predict(self, texts: Sequence[str]) -> list[dict]:
        """Per text: domain, label, confidence and the selected experts with routing weights."""
        order, batches = self.trunk(texts)
        out: list[dict | None] = [None] * len(texts)
        names = self.model.moe.label_space.names
        pos = 0
        for batch in batches:
            res = self.model.moe(batch)
            conf, best = res.log_probs.exp().max(dim=1)
            for j in range(best.shape[0]):
                domain, _, label = names[int(best[j])].partition(":")
                chosen = [
                    {"expert": self.model.keys[int(e)],
                     "name": self.expert_labels[int(e)],
                     "weight": round(float(w), 6)}
                    for e, w in zip(res.topk_idx[j].tolist(), res.topk_w[j].tolist(),
                                    strict=True)
                ]
                out[order[pos]] = {"domain": domain, "label": label,
                                   "confidence": round(float(conf[j]), 6), "experts": chosen}
                pos += 1
        return out  # type: ignore[return-value]
