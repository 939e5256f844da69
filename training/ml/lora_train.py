"""Train a LoRA expert with peft: a SEQ_CLS adapter on the frozen backbone, early-stopped on dev.

The result is the standard PEFT adapter (what `save_pretrained` writes), held as a LoraExpert of
a bank so the platform serves it like any uploaded adapter.
"""
from __future__ import annotations

import contextlib
import json
import logging
import math

import torch
from torch import nn
from transformers import AutoModelForSequenceClassification, get_linear_schedule_with_warmup

from experts.ml.backbone import Backbone
from experts.ml.common import ProgressFn, StopFn, check_stop
from experts.ml.lora import adapter_weights, lora_expert_from_state
from experts.ml.trunk import pad_ids
from training.ml.expert_train import EarlyStopping, dev_metrics, train_batches

logger = logging.getLogger(__name__)
WARMUP = 0.06  # share of the training steps over which the learning rate warms up


def peft_config_dict(peft_config, *, base_name: str) -> dict:
    """adapter_config.json as save_pretrained writes it (sets as lists), naming the hub id."""
    cfg = peft_config.to_dict()
    cfg.pop("runtime_config", None)
    cfg["base_model_name_or_path"] = base_name
    cfg["inference_mode"] = True
    return json.loads(json.dumps(cfg, default=lambda x: sorted(x) if isinstance(x, set) else
                                 str(x)))


@torch.no_grad()
def _logits(model: nn.Module, ids: list[list[int]], *, device: torch.device,
            batch_size: int = 128) -> torch.Tensor:
    model.eval()
    out = torch.empty(len(ids), model.config.num_labels)
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]), reverse=True)
    for b in range(0, len(order), batch_size):
        idx = order[b : b + batch_size]
        input_ids, mask = pad_ids([ids[i] for i in idx], device=device)
        out[idx] = model(input_ids=input_ids, attention_mask=mask).logits.float().cpu()
    return out


def train_lora(cfg, *, backbone: Backbone, domain, train_rows, on_progress: ProgressFn | None,
               should_stop: StopFn | None, device: torch.device):
    """(LoraExpert, history, best): fine-tune a LoRA adapter + head with AdamW, cross-entropy."""
    from peft import (
        LoraConfig,
        get_peft_model,
        set_peft_model_state_dict,
    )

    labels = list(domain.labels)
    index = {label: i for i, label in enumerate(labels)}
    ids = {"train": backbone.tokenize([t for t, _ in train_rows]),
           "dev": backbone.tokenize([t for t, _ in domain.dev])}
    gold = {"train": torch.tensor([index[y] for _, y in train_rows]),
            "dev": torch.tensor([index[y] for _, y in domain.dev])}
    model = AutoModelForSequenceClassification.from_pretrained(
        backbone.folder, num_labels=len(labels), local_files_only=True).to(device)
    peft_config = LoraConfig(task_type="SEQ_CLS", r=cfg.lora_r, lora_alpha=cfg.lora_alpha,
                             lora_dropout=cfg.lora_dropout,
                             target_modules=list(cfg.lora_targets))
    model = get_peft_model(model, peft_config)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.lr,
                            weight_decay=cfg.weight_decay)
    cuda = device.type == "cuda"
    # Mixed precision where it is safe: fp16 autocast with loss scaling on CUDA only.
    scaler = torch.amp.GradScaler("cuda") if cuda else None
    gen = torch.Generator().manual_seed(cfg.seed)
    lengths = [len(x) for x in ids["train"]]
    steps_per_epoch = math.ceil(len(lengths) / cfg.batch_size)
    total = cfg.epochs * steps_per_epoch
    report_every = max(1, steps_per_epoch // 4)
    # The usual fine-tuning schedule: linear warm-up over the first 6 % of the steps, then
    # linear decay to 0 at the last epoch (early stopping may end sooner).
    schedule = get_linear_schedule_with_warmup(opt, math.ceil(WARMUP * total), total)
    history, step = [], 0
    stopping = EarlyStopping(cfg.patience)
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        running = 0.0
        for rows in train_batches(len(lengths), torch.tensor(lengths), cfg.batch_size, gen):
            check_stop(should_stop, f"in LoRA training epoch {epoch}")
            input_ids, mask = pad_ids([ids["train"][i] for i in rows.tolist()], device=device)
            autocast = (torch.autocast("cuda", dtype=torch.float16) if cuda
                        else contextlib.nullcontext())
            with autocast:
                logits = model(input_ids=input_ids, attention_mask=mask).logits
            loss = nn.functional.cross_entropy(logits.float(), gold["train"][rows].to(device))
            opt.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
            else:
                loss.backward()
                opt.step()
            schedule.step()
            running += loss.item() * len(rows)
            step += 1
            if on_progress is not None and step % report_every == 0:
                on_progress(step, total, f"epoch {epoch}/{cfg.epochs}: loss {loss.item():.4f}")
        dev = dev_metrics(_logits(model, ids["dev"], device=device), gold["dev"], len(labels))
        history.append({"epoch": epoch, "train_loss": running / len(lengths),
                        "dev_loss": dev["loss"], "dev_accuracy": dev["accuracy"],
                        "dev_macro_f1": dev["macro_f1"]})
        logger.info("LoRA epoch %d: dev accuracy %.4f", epoch, dev["accuracy"])
        stop = stopping.update(epoch, dev, lambda: {
            k: v.detach().to("cpu", copy=True)
            for k, v in adapter_weights(model).items()})
        if on_progress is not None:
            on_progress(epoch * steps_per_epoch, total,
                        f"epoch {epoch}/{cfg.epochs}: dev accuracy {dev['accuracy']:.4f}")
        if stop:
            break
    best = stopping.best
    set_peft_model_state_dict(model, best["state"])
    adapter = peft_config_dict(peft_config, base_name=backbone.name)
    expert = lora_expert_from_state(
        adapter, best["state"], backbone=backbone, domain=domain.name, labels=labels)
    return expert, history, best
