"""The model card of an expert version, in the Hub's format, and its downloadable folder.

README.md starts with YAML metadata (base_model, license, datasets, metrics, pipeline_tag, ...)
as the Hugging Face Hub reads it, then says in a few lines what the expert is and how to load
it. No torch: the web process builds it from the stored manifest.
"""
from __future__ import annotations

import io
import json
import zipfile

import yaml

from experts.ml.lora_config import ADAPTER_CONFIG_NAME, ADAPTER_WEIGHTS_NAME

MANIFEST_NAME = "manifest.json"
WEIGHTS_NAME = "weights.safetensors"


def hub_license(name: str | None) -> str:
    """A license as the Hub's metadata names it (cc-by-4.0, mit); free text becomes "other"."""
    name = (name or "").strip().lower()
    return name if name and " " not in name else "other"


def model_card(manifest: dict, *, metrics: dict | None = None,
               license: str | None = None) -> str:
    """README.md for an expert: YAML metadata, then a few lines for a person.

    metrics: the platform's own scores (private test split) when known; else the manifest's.
    license: the expert's, when the manifest names none.
    """
    kind, domain = manifest["kind"], manifest["domain"]
    scores = metrics if metrics else manifest.get("metrics") or {}
    meta = {
        "base_model": manifest["backbone"]["name"],
        "library_name": "peft" if kind == "lora" else "moecollab",
        "pipeline_tag": "text-classification",
        "license": hub_license(manifest.get("license") or license),
        "tags": ["moecollab", f"moecollab-{kind}", f"domain:{domain}"],
        "datasets": [domain],
        "metrics": [{"name": k, "value": round(float(v), 6)} for k, v in scores.items()
                    if isinstance(v, (int, float)) and k.endswith(("accuracy", "macro_f1"))],
    }
    name = manifest.get("name") or f"{domain} {kind} expert"
    labels = ", ".join(manifest["labels"])
    lines = [f"---\n{yaml.safe_dump(meta, sort_keys=False)}---\n", f"# {name}\n"]
    if manifest.get("description"):
        lines.append(f"{manifest['description']}\n")
    base = manifest["backbone"]["name"]
    if kind == "lora":
        lines.append(f"A LoRA adapter (PEFT, SEQ_CLS) on `{base}` for the MoECollab domain "
                     f"`{domain}`. Labels, in the order of the head's outputs: {labels}.\n")
        lines.append("```python\nfrom peft import PeftModel\n"
                     "from transformers import AutoModelForSequenceClassification\n\n"
                     "base = AutoModelForSequenceClassification.from_pretrained(\n"
                     f"    \"{base}\", num_labels={len(manifest['labels'])})\n"
                     "model = PeftModel.from_pretrained(base, \"path/to/this/folder\")\n```\n")
    else:
        lines.append(f"A {kind} expert on `{base}` (split layer {manifest['split_layer']}) "
                     f"for the MoECollab domain `{domain}`. Labels, in the order of its "
                     f"outputs: {labels}. Load it with `experts.ml.artifact.load_expert` or "
                     "check it with `moecollab inspect`; `manifest.json` describes it.\n")
    if metrics and metrics.get("test_accuracy") is not None and metrics.get("n_eval"):
        lines.append(f"## Evaluation on the platform\n\nAccuracy {metrics['test_accuracy']:.4f}"
                     f" on n = {int(metrics['n_eval'])} examples of the domain's "
                     f"{metrics.get('eval_split') or 'test'} split (the test split is private)."
                     + (f" Macro-F1 {metrics['test_macro_f1']:.4f}."
                        if metrics.get("test_macro_f1") is not None else "") + "\n")
    if provenance := training_provenance(manifest):
        lines.append("## Training\n\n" + "\n".join(f"- {k}: {v}" for k, v in provenance) + "\n")
    if claimed := dev_metrics(manifest):
        lines.append("## Metrics in the manifest\n\n" + "\n".join(
            f"- {m['name']}: {m['value']:.4f}" + (f" (n = {m['n']})" if m["n"] else "")
            for m in claimed) + "\n")
    return "\n".join(lines)


MAX_PROVENANCE_ROWS = 40  # a manifest may hold any keys; a card shows a readable few
MAX_VALUE_CHARS = 200


def _short(value) -> str:
    text = str(value)
    return text if len(text) <= MAX_VALUE_CHARS else text[:MAX_VALUE_CHARS - 1] + "…"


def training_provenance(manifest: dict) -> list[tuple[str, str]]:
    """The manifest's `training` block as (what, value) rows for a person: nested objects one
    level deep (config.lr), the per-epoch history counted rather than listed."""
    training = manifest.get("training")
    if not isinstance(training, dict):
        return []
    rows: list[tuple[str, str]] = []
    for key, value in training.items():
        if key == "history" and isinstance(value, list):
            rows.append((key, f"{len(value)} epochs recorded"))
        elif isinstance(value, dict):
            rows += [(f"{key}.{k}", _short(v)) for k, v in value.items()
                     if not isinstance(v, (dict, list))]
        elif isinstance(value, list):
            rows.append((key, _short(", ".join(str(v) for v in value))))
        else:
            rows.append((key, _short(value)))
    return rows[:MAX_PROVENANCE_ROWS]


def dev_metrics(manifest: dict) -> list[dict]:
    """The scores the manifest claims (its trainer's dev split): name, value, and the number of
    rows behind an accuracy when the manifest records it (metrics.n_dev or training.n_dev)."""
    metrics = manifest.get("metrics")
    if not isinstance(metrics, dict):
        return []
    training = manifest.get("training") if isinstance(manifest.get("training"), dict) else {}
    n = metrics.get("n_dev", training.get("n_dev"))
    n = int(n) if isinstance(n, (int, float)) and n >= 1 else None
    return [{"name": name, "value": float(value), "is_accuracy": name.endswith("accuracy"),
             "n": n if name.startswith("dev_") and name.endswith("accuracy") else None}
            for name, value in list(metrics.items())[:MAX_PROVENANCE_ROWS]
            if isinstance(value, (int, float)) and name not in ("n_dev", "n_train")]


def folder_files(manifest: dict, weights: bytes, *, metrics: dict | None = None,
                 license: str | None = None) -> dict[str, bytes]:
    """The files of a version's folder: a LoRA expert's loads with PeftModel.from_pretrained."""
    files = {MANIFEST_NAME: (json.dumps(manifest, indent=2, ensure_ascii=False) + "\n").encode(),
             "README.md": model_card(manifest, metrics=metrics, license=license).encode()}
    if manifest["kind"] == "lora":
        config = manifest["architecture"]["adapter_config"]
        files[ADAPTER_CONFIG_NAME] = (json.dumps(config, indent=2) + "\n").encode()
        files[ADAPTER_WEIGHTS_NAME] = weights
    else:
        files[WEIGHTS_NAME] = weights
    return files


def folder_zip(files: dict[str, bytes], *, folder: str) -> bytes:
    """A zip holding `files` under one folder name."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(f"{folder}/{name}", data)
    return out.getvalue()
