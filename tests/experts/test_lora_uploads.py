"""LoRA adapters as plain peft writes them: `inspect_expert DIR --labels`, and every malformed
upload refused with a message naming the problem and nothing left behind."""
from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import torch
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from safetensors.torch import load as load_bytes
from safetensors.torch import save as save_bytes

from experts.models import ExpertVersion
from tests.gating.conftest import domain_labels, shared_domain
from tests.helpers import api_client_for, make_expert, media_files

LABELS = ["negative", "positive"]


def _peft_folder(out: Path, *, safe: bool = True, n_labels: int = 2, **lora) -> Path:
    """A contributor's save_pretrained output on the platform's backbone (random adapter)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForSequenceClassification

    from experts.ml.backbone import packaged_model_path

    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(packaged_model_path(),
                                                               num_labels=n_labels)
    config = LoraConfig(task_type="SEQ_CLS", r=4, lora_alpha=8,
                        target_modules=lora.pop("target_modules", ["query", "value"]), **lora)
    peft_model = get_peft_model(model, config)
    with torch.no_grad():
        for p in peft_model.parameters():
            if p.requires_grad:
                p.normal_(0, 0.05)
    peft_model.save_pretrained(out, safe_serialization=safe)
    return out


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return _peft_folder(tmp_path_factory.mktemp("peft") / "sentiment")


def test_it_inspects_a_folder_plain_peft_wrote(folder, capsys):
    call_command("inspect_expert", str(folder), "--labels", ",".join(LABELS))
    out = capsys.readouterr().out
    assert "✓ loads and runs" in out and "✓ tensors match architecture" in out
    assert "artifact OK" in out and "kind:        lora" in out


def test_it_refuses_the_same_adapter_saved_as_a_pickle(tmp_path):
    pickled = _peft_folder(tmp_path / "pickled", safe=False)
    assert (pickled / "adapter_model.bin").is_file()
    with pytest.raises(CommandError, match="pickle files are not accepted; save with "
                                           "safe_serialization"):
        call_command("inspect_expert", str(pickled), "--labels", ",".join(LABELS))


def test_it_needs_the_label_order(folder):
    with pytest.raises(CommandError, match="needs --labels"):
        call_command("inspect_expert", str(folder))


def _upload(client, expert, config: bytes, weights: bytes, labels: str, *,
            weights_name: str = "adapter_model.safetensors"):
    return client.post(f"/api/v1/experts/{expert.pk}/versions/", {
        "adapter_config": SimpleUploadedFile("adapter_config.json", config),
        "adapter_model": SimpleUploadedFile(weights_name, weights),
        "labels": labels}, format="multipart")


def _with_config(folder: Path, **change) -> bytes:
    cfg = json.loads((folder / "adapter_config.json").read_text())
    cfg.update(change)
    return json.dumps(cfg).encode()


def _weights(folder: Path, edit=None) -> bytes:
    state = load_bytes((folder / "adapter_model.safetensors").read_bytes())
    if edit is not None:
        edit(state)
    return save_bytes(state)


def _nan(state):
    name = next(k for k in state if "lora_B" in k)
    state[name][0, 0] = float("nan")


def _drop_one(state):
    del state[next(k for k in state if "lora_A" in k)]


CASES = [
    ("a pickled adapter_model.bin", lambda f: (_with_config(f), b"\x80\x04pickled", "positive"),
     "adapter_model.bin", "pickle files are not accepted"),
    ("a torch.save zip", lambda f: (_with_config(f), b"PK\x03\x04zip", "positive"),
     "adapter_model.safetensors", "pickle files are not accepted"),
    ("another peft method", lambda f: (_with_config(f, peft_type="IA3"), _weights(f), None),
     None, 'peft_type must be "LORA"'),
    ("a causal LM adapter", lambda f: (_with_config(f, task_type="CAUSAL_LM"), _weights(f), None),
     None, 'task_type must be "SEQ_CLS"'),
    ("a huge rank", lambda f: (_with_config(f, r=512), _weights(f), None), None,
     "r (the LoRA rank) must be an integer in 1..64"),
    ("a module the backbone lacks", lambda f: (_with_config(f, target_modules=["q_proj"]),
                                               _weights(f), None), None,
     "do not exist in the backbone"),
    ("code-bearing options", lambda f: (_with_config(f, auto_mapping={"x": "os.system"}),
                                        _weights(f), None), None,
     "option 'auto_mapping' is not supported"),
    ("a head of the wrong size", lambda f: (_with_config(f), _weights(f), "a,b,c"), None,
     "head over 3 labels) needs [3]"),
    ("NaN weights", lambda f: (_with_config(f), _weights(f, _nan), None), None, "contains NaN"),
    ("a missing tensor", lambda f: (_with_config(f), _weights(f, _drop_one), None), None,
     "missing tensor"),
    ("labels of another domain", lambda f: (_with_config(f), _weights(f), "yes,no"), None,
     "are not labels of domain"),
]


@pytest.mark.parametrize("what, build, weights_name, message", CASES,
                         ids=[c[0] for c in CASES])
def test_it_refuses_a_malformed_adapter_and_keeps_nothing(
        what, build, weights_name, message, folder, owner, media_root):
    expert = make_expert(owner, shared_domain("sentiment"))
    config, weights, labels = build(folder)
    labels = labels if labels is not None else ",".join(domain_labels("sentiment"))
    response = _upload(api_client_for(owner), expert, config, weights, labels,
                       weights_name=weights_name or "adapter_model.safetensors")
    assert response.status_code == 400, response.content
    assert message in response.json()["error"]["message"]
    assert not ExpertVersion.objects.exists()
    assert not [p for p in media_files(media_root) if "experts/" in str(p)]


def test_it_takes_a_good_adapter_and_labels_it_lora(folder, owner):
    expert = make_expert(owner, shared_domain("sentiment"))
    response = _upload(api_client_for(owner), expert, _with_config(folder), _weights(folder),
                       ",".join(domain_labels("sentiment")))
    assert response.status_code == 201, response.content
    version = ExpertVersion.objects.get()
    assert version.kind == "lora" and version.manifest["labels"] == domain_labels("sentiment")
    assert version.manifest["architecture"]["adapter_config"]["peft_type"] == "LORA"
    assert io.BytesIO(version.weights.read()).read(8)  # stored as uploaded
