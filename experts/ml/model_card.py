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


def model_card(manifest: dict, *, metrics: dict | None = None) -> str:
    """README.md for an expert: YAML metadata, then a few lines for a person.

    metrics: the platform's own scores (private test split) when known; else the manifest's.
    """
    kind, domain = manifest["kind"], manifest["domain"]
    scores = metrics if metrics else manifest.get("metrics") or {}
    meta = {
        "base_model": manifest["backbone"]["name"],
        "library_name": "peft" if kind == "lora" else "moecollab",
        "pipeline_tag": "text-classification",
        "license": manifest.get("license") or "other",
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
    return "\n".join(lines)


def folder_files(manifest: dict, weights: bytes, *, metrics: dict | None = None
                 ) -> dict[str, bytes]:
    """The files of a version's folder: a LoRA expert's loads with PeftModel.from_pretrained."""
    files = {MANIFEST_NAME: (json.dumps(manifest, indent=2, ensure_ascii=False) + "\n").encode(),
             "README.md": model_card(manifest, metrics=metrics).encode()}
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
