"""Accuracy gate for serving backends: predictions must match the float32 backbone's."""
from __future__ import annotations

import time
from collections.abc import Sequence

import torch

from experts.ml.trunk import TrunkSpec
from gating.ml.bundle import GatingModel

MIN_AGREEMENT = 0.995  # share of inputs whose prediction equals the float32 one
MAX_ACCURACY_DELTA = 0.3  # points of summary accuracy a backend may move


@torch.inference_mode()
def predict_union(trunk, model: GatingModel, texts: Sequence[str], *, spec: TrunkSpec | None = None,
                  batch_size: int = 64) -> tuple[torch.Tensor, float]:
    """(N,) union-space predictions of `model` on `texts` through `trunk`, and the seconds taken."""
    pred = torch.empty(len(texts), dtype=torch.long)
    started = time.perf_counter()
    for idx, batch in trunk.encode_batches(texts, spec or model.spec, batch_size=batch_size):
        pred[idx] = model.moe(batch).log_probs.argmax(dim=1).cpu()
    return pred, time.perf_counter() - started


def summary_accuracy(pred: torch.Tensor, targets: torch.Tensor, groups: Sequence[str]) -> float:
    """Unweighted mean over groups (domains) of the accuracy within each group."""
    per = []
    for g in dict.fromkeys(groups):
        rows = torch.tensor([i for i, x in enumerate(groups) if x == g])
        per.append(float((pred[rows] == targets[rows]).float().mean()))
    return sum(per) / len(per)


def gate_verdict(*, agreement: float, accuracy_delta: float) -> bool:
    """Acceptable: >= 99.5 % identical predictions and |delta summary accuracy| <= 0.3 points."""
    return agreement >= MIN_AGREEMENT and abs(accuracy_delta) <= MAX_ACCURACY_DELTA


def compare_backends(model: GatingModel, reference, candidates: dict[str, object], *,
                     texts: Sequence[str], targets: torch.Tensor, groups: Sequence[str],
                     batch_size: int = 64) -> dict:
    """The gate's numbers for each candidate trunk against the float32 `reference` trunk.

    agreement = share of inputs with the reference's prediction; accuracy_delta = candidate
    minus reference summary accuracy, in points; texts_per_s measured on the same rows.
    """
    ref_pred, ref_s = predict_union(reference, model, texts, batch_size=batch_size)
    ref_acc = summary_accuracy(ref_pred, targets, groups)
    out = {"n": len(texts), "reference": {"accuracy": ref_acc,
                                          "texts_per_s": len(texts) / max(ref_s, 1e-9)},
           "min_agreement": MIN_AGREEMENT, "max_accuracy_delta": MAX_ACCURACY_DELTA,
           "backends": {}}
    for name, trunk in candidates.items():
        pred, seconds = predict_union(trunk, model, texts, batch_size=batch_size)
        agreement = float((pred == ref_pred).float().mean())
        delta = (summary_accuracy(pred, targets, groups) - ref_acc) * 100
        out["backends"][name] = {
            "agreement": agreement, "accuracy_delta": delta,
            "texts_per_s": len(texts) / max(seconds, 1e-9),
            "acceptable": gate_verdict(agreement=agreement, accuracy_delta=delta)}
    return out


def pick_backend(section: dict | None, *, available: Sequence[str] = ()) -> str:
    """The fastest acceptable backend of a report's measurements, else torch-float32."""
    measured = (section or {}).get("backends", {})
    ok = [(m["texts_per_s"], name) for name, m in measured.items()
          if m.get("acceptable") and (not available or name in available)]
    return max(ok)[1] if ok else "torch-float32"


def serving_backend_report(model: GatingModel, backbone, domains: Sequence, *, configured: str,
                           cache_dir, threads: int = 1, bf16_fast: bool = False,
                           batch_size: int = 64) -> dict:
    """The EVALUATE report's `serving_backend` section: the gate's numbers on the evaluation
    rows for the configured serving backend (every candidate here when it is "auto")."""
    from experts.ml.inference import BackendUnavailable, candidate_backends, open_backend
    from gating.ml.evaluate import eval_rows

    space = model.moe.label_space
    texts, targets, groups = [], [], []
    for d in domains:
        for text, label in eval_rows(d)[0]:
            texts.append(text)
            targets.append(space.index(d.name, label))
            groups.append(d.name)
    names = (candidate_backends(bf16_fast=bf16_fast) if configured == "auto" else [configured])
    trunks, unavailable = {}, {}
    for name in names:
        if name == "torch-float32":
            continue
        try:
            trunks[name] = open_backend(backbone, name, cache_dir=cache_dir, threads=threads)
        except BackendUnavailable as exc:
            unavailable[name] = str(exc)
    out = compare_backends(model, backbone, trunks, texts=texts,
                           targets=torch.tensor(targets), groups=groups, batch_size=batch_size)
    out["backends"]["torch-float32"] = {"agreement": 1.0, "accuracy_delta": 0.0,
                                        "texts_per_s": out["reference"]["texts_per_s"],
                                        "acceptable": True}
    out["unavailable"] = unavailable
    out["configured"] = configured
    out["chosen"] = configured if configured != "auto" else pick_backend(out)
    return out


def promotion_refusal(section: dict | None) -> str | None:
    """Why a version's serving backend fails the gate (with the numbers), or None if it passes."""
    if not section:
        return None
    name = section.get("configured", "auto")
    if name == "auto":  # auto serves only a backend that passed, else torch-float32
        return None
    if name in section.get("unavailable", {}):
        return f"serving backend {name} is unavailable: {section['unavailable'][name]}"
    m = section.get("backends", {}).get(name)
    if m is None or m.get("acceptable"):
        return None
    return (f"serving backend {name} fails the accuracy gate on {section.get('n', 0)} "
            f"evaluation rows: agreement with float32 {m['agreement'] * 100:.2f} % (needs "
            f">= {MIN_AGREEMENT * 100:.1f} %), summary accuracy change "
            f"{m['accuracy_delta']:+.2f} points (needs |change| <= {MAX_ACCURACY_DELTA})")
