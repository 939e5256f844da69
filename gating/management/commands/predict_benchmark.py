"""Serving speed of each inference backend against a plain transformers float32 forward.

One run, the same texts and the same gating model: (a) the reference, `model(**tokenizer(batch))`
in float32 with mean pooling plus the model's router and experts; (b) each backend of
experts.ml.inference through the Predictor's path. Prints texts/s, p50/p95 per call, the ratio
to the reference, prediction agreement with it, accuracy when labels are given, and the CPU.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import torch
from django.core.management.base import BaseCommand, CommandError

from experts.ml.inference import cpu_info
from experts.ml.trunk import LayeredBatch, mean_pool, surface_of


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def _reference_batch(backbone, spec, texts) -> LayeredBatch:
    """The plain transformers forward: tokenizer + model(**enc) + mean pooling per layer."""
    enc = backbone.tokenizer(list(texts), padding=True, truncation=True,
                             max_length=backbone.cfg.max_length, return_tensors="pt")
    out = backbone.model(**enc, output_hidden_states=True)
    mask = enc["attention_mask"]
    pooled = {k: mean_pool(out.hidden_states[k], mask) for k in spec.all_pooled}
    hidden = {k: out.hidden_states[k] for k in spec.tokens}
    return LayeredBatch(pooled=pooled, hidden=hidden,
                        mask=mask if hidden or spec.ids else None,
                        input_ids=enc["input_ids"] if spec.ids else None,
                        surface=surface_of(list(texts), spec))


@torch.inference_mode()
def _run(call, texts: list[str], batch: int) -> tuple[torch.Tensor, list[float]]:
    """Predictions over all texts in calls of `batch`, and each call's seconds (one warm-up)."""
    call(texts[:batch])
    preds, times = [], []
    for start in range(0, len(texts), batch):
        t0 = time.perf_counter()
        preds.append(call(texts[start:start + batch]))
        times.append(time.perf_counter() - t0)
    return torch.cat(preds), times


class Command(BaseCommand):
    help = "Measure serving backends against a plain transformers float32 reference."

    def add_arguments(self, parser):
        parser.add_argument("--texts", required=True,
                            help="JSONL with a 'text' per row (and 'label' for --labels)")
        parser.add_argument("--labels", action="store_true",
                            help="score accuracy with the rows' 'label' (and 'domain', default: "
                                 "the file's folder name)")
        parser.add_argument("--batch", type=int, default=64, help="texts per call")
        parser.add_argument("--limit", type=int, default=256, help="texts read from the file")
        parser.add_argument("--backends", nargs="+", default=None,
                            help="backends to measure (default: every candidate here)")
        parser.add_argument("--bundle", default=None,
                            help="a gating bundle file (default: the production version's)")
        parser.add_argument("--threads", type=int, default=None,
                            help="intra-op threads (default: MOECOLLAB_PREDICT_THREADS)")
        parser.add_argument("--chunk", type=int, default=None,
                            help="texts per forward inside a call, as serving runs them "
                                 "(default: MOECOLLAB_PREDICT_CHUNK)")
        parser.add_argument("--json", default=None, help="also write the results here")

    def handle(self, *args, **opts):
        from django.conf import settings

        from experts.ml.backbone import BackboneConfig, load_backbone
        from experts.ml.inference import (
            BACKENDS,
            BackendUnavailable,
            candidate_backends,
            open_backend,
        )
        from gating.ml.backend_gate import gate_verdict, pick_backend
        from gating.ml.bundle import load_bundle
        from gating.ml.predictor import Predictor, fast_cpu_bf16

        threads = opts["threads"] or int(settings.MOECOLLAB_PREDICT_THREADS)
        torch.set_num_threads(threads)
        path = Path(opts["texts"])
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()
                if line.strip()][: opts["limit"]]
        if not rows:
            raise CommandError(f"{path} has no rows")
        texts = [r["text"] for r in rows]
        batch = max(1, opts["batch"])
        chunk = max(1, opts["chunk"] or int(settings.MOECOLLAB_PREDICT_CHUNK))
        backbone = load_backbone(BackboneConfig(device="cpu"))
        bundle = opts["bundle"] or self._production_bundle()
        model = load_bundle(bundle, expected_fingerprint=backbone.fingerprint, backbone=backbone)
        spec, moe = model.spec, model.moe
        targets = None
        space = moe.label_space
        if opts["labels"]:
            targets = torch.tensor([space.index(r.get("domain", path.parent.name), r["label"])
                                    for r in rows])

        def accuracy(pred):
            return None if targets is None else float((pred == targets).float().mean())

        def stats(times):
            return {"texts_per_s": len(texts) / sum(times),
                    "p50_ms": percentile(times, 50) * 1000, "p95_ms": percentile(times, 95) * 1000}

        ref_pred, ref_times = _run(
            lambda b: moe(_reference_batch(backbone, spec, b)).log_probs.argmax(dim=1),
            texts, batch)
        reference = {**stats(ref_times), "accuracy": accuracy(ref_pred)}
        names = opts["backends"] or candidate_backends(bf16_fast=fast_cpu_bf16())
        results, gate = {}, {"backends": {}}
        for name in names:
            if name not in BACKENDS:
                raise CommandError(f"unknown backend {name!r}; choose from {', '.join(BACKENDS)}")
            try:
                trunk = open_backend(backbone, name, cache_dir=settings.MOECOLLAB_FEATURE_CACHE_DIR,
                                     threads=threads)
            except BackendUnavailable as exc:
                self.stderr.write(f"{name}: unavailable ({exc})")
                continue

            # serving's own path: the Predictor, in chunks of `chunk` texts per forward
            predictor = Predictor(trunk, model, batch_size=chunk)

            def call(b, predictor=predictor):
                return torch.tensor([space.index(r["domain"], r["label"])
                                     for r in predictor.predict(b)])

            pred, times = _run(call, texts, batch)
            m = stats(times)
            m["ratio"] = m["texts_per_s"] / reference["texts_per_s"]
            m["agreement"] = float((pred == ref_pred).float().mean())
            m["accuracy"] = accuracy(pred)
            results[name] = m
            delta = 0.0 if targets is None else (m["accuracy"] - reference["accuracy"]) * 100
            gate["backends"][name] = {"texts_per_s": m["texts_per_s"], "acceptable": gate_verdict(
                agreement=m["agreement"], accuracy_delta=delta)}
        out = {"cpu": cpu_info(), "batch": batch, "chunk": chunk, "n_texts": len(texts),
               "reference": reference, "backends": results, "serving_backend": pick_backend(gate)}
        self._print(out)
        if opts["json"]:
            Path(opts["json"]).write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")

    def _production_bundle(self) -> str:
        from gating import selectors

        pk = selectors.production_version_id()
        version = selectors.gating_version_get(pk=pk) if pk is not None else None
        if version is None or not version.weights:
            raise CommandError("no gating model in production; pass --bundle PATH")
        return version.weights.path

    def _print(self, out: dict) -> None:
        cpu = out["cpu"]
        self.stdout.write(f"CPU: {cpu['model']} (flags: {' '.join(cpu['flags']) or 'none'}); "
                          f"{out['n_texts']} texts, batch {out['batch']} "
                          f"(chunks of {out['chunk']}), "
                          f"{torch.get_num_threads()} thread(s)")
        self.stdout.write(f"{'backend':<24}{'texts/s':>9}{'p50 ms':>9}{'p95 ms':>9}"
                          f"{'ratio':>7}{'agree':>8}{'acc':>8}")

        def row(name, m):
            acc = "-" if m.get("accuracy") is None else f"{m['accuracy']:.4f}"
            agree = f"{m['agreement']:.4f}" if "agreement" in m else "-"
            ratio = f"{m['ratio']:.2f}" if "ratio" in m else "1.00"
            self.stdout.write(f"{name:<24}{m['texts_per_s']:>9.1f}{m['p50_ms']:>9.1f}"
                              f"{m['p95_ms']:>9.1f}{ratio:>7}{agree:>8}{acc:>8}")

        row("reference (transformers)", out["reference"])
        for name, m in out["backends"].items():
            row(name, m)
        self.stdout.write(f"serving default here: {out['serving_backend']}")
