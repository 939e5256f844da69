"""A production gating model built straight into the database and media, with no worker: for
tests of the pages that ask it (the playground, the home page).

`trained=False` is quick: random expert weights and a router biased towards one expert, so
which domain answers is known. `trained=True` trains real head experts and the router with the
engine on the bundled sample set (about a minute on two busy cores), so answers make sense in
screenshots.
"""
from __future__ import annotations

from pathlib import Path

from django.core.files.storage import default_storage

from experts import services
from experts.models import Domain
from gating.models import GatingMember, GatingVersion, Promotion
from moecollab_site.demo import SAMPLE_DATA_DIR
from tests.helpers import make_artifact, make_domain, make_expert, make_version, train_real_artifact


def _domain(name: str, *, trained: bool) -> Domain:
    if trained:  # the import path, which also fills the standard examples and label help
        return services.domain_import_folder(path=SAMPLE_DATA_DIR / name)
    from experts.domain_guides import STANDARD_GUIDES

    domain = make_domain(name, labels=STANDARD_GUIDES[name]["labels"])
    domain.apply_standard_guide()
    return domain


def production_model(*, owner, maintainer, folder: Path, domains=("news", "questions"),
                     trained: bool = False, favour: int = 1) -> GatingVersion:
    """Domains, one approved expert each, and a gating version promoted to production.
    Untrained, the router sends every text to expert number `favour` (0-based)."""
    import torch

    from experts.ml.backbone import BackboneConfig, load_backbone
    from experts.ml.data import load_domain_dir
    from experts.ml.features import FeatureCache
    from gating.ml.bundle import GatingModel, save_bundle
    from gating.ml.moe import LabelSpace, MixtureOfExperts
    from gating.ml.router import Router, RouterConfig
    from gating.ml.training import ExpertSource, GatingTrainConfig, load_experts, train_gating

    backbone = load_backbone(BackboneConfig(device="cpu"))
    cache = FeatureCache(folder / "features", backbone)
    versions = []
    for name in domains:
        domain = _domain(name, trained=trained)
        artifact = folder / f"artifact-{name}"
        if trained:
            train_real_artifact(SAMPLE_DATA_DIR / name, artifact, cache_dir=folder / "features")
        else:
            make_artifact(artifact, domain=name, labels=domain.labels)
        versions.append(make_version(make_expert(owner, domain, name=f"{name}-head"),
                                     artifact=artifact))
    keys = [str(v.pk) for v in versions]
    experts = load_experts(
        [ExpertSource(key=k, domain=v.expert.domain.name, manifest=Path(v.manifest_file.path),
                      weights=Path(v.weights.path)) for k, v in zip(keys, versions, strict=True)],
        fingerprint=backbone.fingerprint)
    if trained:
        model = train_gating(
            GatingTrainConfig(epochs=15, compare_unregularized=False, device="cpu"),
            experts=experts, keys=keys, cache=cache,
            domains=[load_domain_dir(SAMPLE_DATA_DIR / name) for name in domains]).model
    else:
        layers = GatingTrainConfig().input_layers(experts)
        router = Router(RouterConfig(hidden_size=len(layers) * backbone.hidden_size,
                                     n_experts=len(experts), noise_std=0.0,
                                     input_layers=layers))
        with torch.no_grad():
            router.gate.weight.zero_()
            router.gate.bias.zero_()
            router.gate.bias[favour] = 10.0
        moe = MixtureOfExperts(router, experts, LabelSpace.from_experts(experts)).eval()
        model = GatingModel(moe=moe, keys=keys, fingerprint=backbone.fingerprint)
    number = (GatingVersion.objects.order_by("-number").values_list("number", flat=True)
              .first() or 0) + 1
    path = Path(default_storage.path(f"gating/playground-v{number}.safetensors"))
    path.parent.mkdir(parents=True, exist_ok=True)
    sha = save_bundle(model, path)
    gating = GatingVersion.objects.create(
        number=number, status=GatingVersion.Status.EVALUATED,
        weights=f"gating/{path.name}", weights_sha256=sha,
        backbone_fingerprint=backbone.fingerprint, trained_by=maintainer,
        label_space=list(model.moe.label_space.names))
    for position, version in enumerate(versions):
        GatingMember.objects.create(version=gating, expert_version=version, position=position)
    Promotion.objects.create(version=gating, promoted_by=maintainer)
    return gating
