"""Writes for the marketplace: domains and data, experts and versions, review, requests."""
from __future__ import annotations

import json
import re
import uuid
from pathlib import Path

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from experts import selectors
from experts.datasets import DatasetError, ParsedDataset, parse_dataset
from experts.models import (
    DataSplit,
    Domain,
    Expert,
    ExpertRequest,
    ExpertVersion,
    Notification,
    ReviewComment,
)
from experts.uploads import UploadRejected, check_peft_upload, check_upload
from moecollab_site.errors import DomainError, forbidden
from moecollab_site.roles import is_maintainer, require_maintainer
from training.models import Job
from training.services import job_create

DOMAIN_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
MAX_DATASET_ROWS = 200_000
MAX_LABELS = 1000


def _require_owner(user, expert: Expert, what: str) -> None:
    if not user.is_authenticated or expert.owner_id != user.pk:
        raise forbidden(f"only the owner of expert {expert} can {what}")


def notify(*, user, message: str, link: str = "") -> None:
    Notification.objects.create(user=user, message=message[:300], link=link[:300])


# Domains and their data -------------------------------------------------------------------


def _check_labels(labels) -> list[str]:
    if not isinstance(labels, list) or not labels:
        raise DomainError("labels must be a non-empty list of strings")
    clean = [label.strip() for label in labels if isinstance(label, str)]
    if len(clean) != len(labels) or not all(clean):
        raise DomainError("labels must be non-empty strings")
    if len(set(clean)) != len(clean):
        raise DomainError("labels must be distinct")
    if len(clean) > MAX_LABELS:
        raise DomainError(f"a domain has at most {MAX_LABELS} labels")
    return clean


def domain_create(*, user, name: str, description: str = "", labels: list[str]) -> Domain:
    require_maintainer(user, "create domains")
    name = (name or "").strip()
    if not DOMAIN_NAME_RE.match(name):
        raise DomainError("name must be 1-64 lowercase letters, digits, '-' or '_'")
    if Domain.objects.filter(name=name).exists():
        raise DomainError(f"a domain named {name!r} already exists", code="duplicate",
                          status_code=409)
    return Domain.objects.create(name=name, description=description,
                                 labels=_check_labels(labels),
                                 created_by=user if user.is_authenticated else None)


MAX_EXAMPLES = 20  # playground examples per domain
MAX_EXAMPLE_CHARS = 300  # a playground example is one short text, not a document
MAX_LABEL_HELP_CHARS = 200


def domain_guide_update(*, user, domain: Domain, examples: list[str],
                        label_help: dict[str, str]) -> Domain:
    """Set a domain's playground examples and the plain words for its labels (maintainers)."""
    require_maintainer(user, "edit a domain's examples and label help")
    if len(examples) > MAX_EXAMPLES:
        raise DomainError(f"{len(examples)} examples; at most {MAX_EXAMPLES} per domain")
    for n, text in enumerate(examples, start=1):
        if len(text) > MAX_EXAMPLE_CHARS:
            raise DomainError(f"example {n} has {len(text)} characters; at most "
                              f"{MAX_EXAMPLE_CHARS}: keep examples to one short text")
    private = {text.strip() for split in domain.splits.filter(is_private=True)
               for text, _ in selectors.domain_rows(domain=domain, kind=split.kind)}
    leaked = [n for n, text in enumerate(examples, start=1) if text.strip() in private]
    if leaked:
        raise DomainError(f"example {leaked[0]} is a row of a private split, which everyone "
                          "would see in the playground; write an example of your own")
    unknown = [label for label in label_help if label not in domain.labels]
    if unknown:
        raise DomainError(f"label help for {', '.join(unknown)}, which this domain does not "
                          f"have; its labels are {', '.join(domain.labels)}")
    for label, words in label_help.items():
        if len(words) > MAX_LABEL_HELP_CHARS:
            raise DomainError(f"the help for {label} has {len(words)} characters; at most "
                              f"{MAX_LABEL_HELP_CHARS}")
    domain.examples, domain.label_help = list(examples), dict(label_help)
    domain.save(update_fields=["examples", "label_help"])
    return domain


def _chunks(upload):
    if hasattr(upload, "chunks"):
        yield from upload.chunks()
    else:
        while chunk := upload.read(64 * 1024):
            yield chunk


def dataset_parse(*, upload, labels: list[str] | None) -> ParsedDataset:
    try:
        return parse_dataset(_chunks(upload), filename=upload.name, labels=labels,
                             max_rows=MAX_DATASET_ROWS)
    except DatasetError as exc:
        raise DomainError(f"{Path(upload.name).name}: {exc}", code="invalid_dataset") from None


def domain_split_upload(*, user, domain: Domain, kind: str, upload,
                        is_private: bool | None = None) -> DataSplit:
    """Validate a JSONL/CSV split and store it, replacing the domain's split of that kind."""
    require_maintainer(user, "upload domain data")
    if kind not in DataSplit.Kind.values:
        raise DomainError(f"split must be one of {', '.join(DataSplit.Kind.values)}")
    parsed = dataset_parse(upload=upload, labels=domain.labels)
    private = (kind == DataSplit.Kind.TEST) if is_private is None else bool(is_private)
    return _split_store(domain=domain, kind=kind, parsed=parsed, private=private, user=user)


def _split_store(*, domain: Domain, kind: str, parsed: ParsedDataset, private: bool,
                 user=None) -> DataSplit:
    name = default_storage.save(f"datasets/{domain.name}/{kind}-{uuid.uuid4().hex}.jsonl",
                                ContentFile(parsed.to_jsonl()))
    try:
        with transaction.atomic():
            old = DataSplit.objects.select_for_update().filter(domain=domain, kind=kind).first()
            old_name = old.file.name if old else None
            if old:
                old.delete()
            split = DataSplit.objects.create(
                domain=domain, kind=kind, is_private=private, file=name,
                n_rows=len(parsed.rows), label_counts=parsed.label_counts, sha256=parsed.sha256,
                uploaded_by=user if user is not None and user.is_authenticated else None,
            )
    except BaseException:
        default_storage.delete(name)
        raise
    if old_name:
        transaction.on_commit(lambda: default_storage.delete(old_name))
    return split


def domain_import_folder(*, path: Path, private_test: bool = True) -> Domain:
    """Create or update a domain from a folder laid out like shared/data."""
    meta_path = path / "domain.json"
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DomainError(f"{meta_path}: cannot read domain.json ({exc})") from None
    name = meta.get("name") or path.name
    labels = _check_labels(meta.get("labels"))
    domain, created = Domain.objects.get_or_create(
        name=name, defaults={"description": meta.get("description", ""), "labels": labels})
    if not created and domain.labels != labels:
        raise DomainError(f"domain {name!r} exists with labels {domain.labels}, "
                          f"{meta_path} says {labels}")
    for kind in DataSplit.Kind.values:
        file = path / f"{kind}.jsonl"
        if not file.exists():
            continue
        with file.open("rb") as fh:
            try:
                parsed = parse_dataset(iter(lambda: fh.read(1 << 20), b""), filename=file.name,
                                       labels=labels, max_rows=MAX_DATASET_ROWS)
            except DatasetError as exc:
                raise DomainError(f"{file}: {exc}") from None
        current = DataSplit.objects.filter(domain=domain, kind=kind).first()
        if current is None or current.sha256 != parsed.sha256:
            _split_store(domain=domain, kind=kind, parsed=parsed,
                         private=private_test and kind == DataSplit.Kind.TEST)
    domain.apply_standard_guide()  # playground examples and label help, for the demo too
    return domain


# Experts and versions -----------------------------------------------------------------------


def expert_create(*, user, domain: Domain, name: str, description: str = "",
                  license: str = "", intended_use: str = "", training_data: str = "") -> Expert:
    if not user.is_authenticated:
        raise DomainError("log in to create experts", code="not_authenticated", status_code=401)
    name = (name or "").strip()
    if not name or len(name) > 100:
        raise DomainError("name must be 1-100 characters")
    if Expert.objects.filter(owner=user, name=name).exists():
        raise DomainError(f"you already have an expert named {name!r}", code="duplicate",
                          status_code=409)
    return Expert.objects.create(owner=user, domain=domain, name=name, description=description,
                                 license=license or "CC-BY-4.0", intended_use=intended_use,
                                 training_data=training_data)


def expert_update(*, user, expert: Expert, **fields) -> Expert:
    _require_owner(user, expert, "edit it")
    allowed = {"description", "license", "intended_use", "training_data"}
    unknown = set(fields) - allowed
    if unknown:
        raise DomainError(f"cannot change {', '.join(sorted(unknown))}")
    for key, value in fields.items():
        setattr(expert, key, value)
    expert.save(update_fields=list(fields))
    return expert


def _next_number(expert: Expert) -> int:
    last = ExpertVersion.objects.filter(expert=expert).order_by("-number").first()
    return (last.number + 1) if last else 1


def _open_request(request_id, *, expert: Expert) -> ExpertRequest | None:
    """The open request a version of `expert` answers: one of its domain, or of none."""
    if request_id in (None, ""):
        return None
    req = ExpertRequest.objects.select_related("domain").filter(pk=request_id).first()
    if req is None:
        raise DomainError(f"request {request_id} does not exist", code="not_found",
                          status_code=404)
    if req.status != ExpertRequest.Status.OPEN:
        raise DomainError(f"request {req.pk} is closed")
    if req.domain_id is not None and req.domain_id != expert.domain_id:
        raise DomainError(f"request {req.pk} asks for an expert of domain {req.domain.name!r}; "
                          f"this expert serves domain {expert.domain.name!r}")
    return req


def expert_version_upload(*, user, expert: Expert, manifest=None, weights=None,
                          adapter_config=None, adapter_model=None, labels=None,
                          answers_request=None) -> ExpertVersion:
    """Check an uploaded artifact, store it as a new version and queue its validation job.

    Either the platform's artifact (manifest + weights) or the folder peft's save_pretrained
    writes for a LoRA expert (adapter_config + adapter_model) with the label order.
    """
    _require_owner(user, expert, "upload versions of it")
    request = _open_request(answers_request, expert=expert)
    peft = adapter_config is not None or adapter_model is not None
    if peft and (adapter_config is None or adapter_model is None or not labels):
        raise DomainError("a LoRA upload needs adapter_config (adapter_config.json), "
                          "adapter_model (adapter_model.safetensors) and labels (the label "
                          "order of its head)", code="invalid_artifact")
    if not peft and (manifest is None or weights is None):
        raise DomainError("upload manifest and weights (an expert artifact), or adapter_config, "
                          "adapter_model and labels (a PEFT LoRA folder)",
                          code="invalid_artifact")
    try:
        if peft:
            checked = check_peft_upload(adapter_config, adapter_model, labels=labels,
                                        domain=expert.domain.name,
                                        max_bytes=settings.MOECOLLAB_UPLOAD_MAX_BYTES)
        else:
            checked = check_upload(manifest, weights,
                                   max_bytes=settings.MOECOLLAB_UPLOAD_MAX_BYTES)
    except UploadRejected as exc:
        status = 413 if exc.check == "file sizes" and "limit" in exc.message else 400
        raise DomainError(f"{exc.check}: {exc.message}", code="invalid_artifact",
                          status_code=status) from None
    m = checked.manifest
    if m["domain"] != expert.domain.name:
        raise DomainError(f"manifest domain {m['domain']!r} does not match the expert's domain "
                          f"{expert.domain.name!r}", code="invalid_artifact")
    stray = [label for label in m["labels"] if label not in expert.domain.labels]
    if stray:
        raise DomainError(f"manifest labels {stray} are not labels of domain "
                          f"{expert.domain.name!r} ({', '.join(expert.domain.labels)})",
                          code="invalid_artifact")
    _refuse_duplicate(checked.sha256)
    return version_store(
        expert=expert, manifest=m, manifest_bytes=checked.manifest_bytes,
        weights_bytes=checked.weights_bytes, sha256=checked.sha256, request=request,
        checks=[{"name": c.name, "ok": c.ok, "message": c.message, "where": "upload"}
                for c in checked.checks],
        user=user,
    )


def _refuse_duplicate(sha256: str) -> None:
    twin = ExpertVersion.objects.filter(weights_sha256=sha256).select_related(
        "expert__owner").first()
    if twin is not None:
        raise DomainError(f"duplicate weights: identical to {twin.label} "
                          f"(sha256 {sha256[:12]}…)", code="duplicate", status_code=409)


def version_store(*, expert: Expert, manifest: dict, manifest_bytes: bytes,
                   weights_bytes: bytes, sha256: str, request, checks: list, user,
                   source: str = ExpertVersion.Source.UPLOAD, training_params=None,
                   version: ExpertVersion | None = None) -> ExpertVersion:
    """Write the files, then the row; on any failure remove both (nothing half-written)."""
    folder = f"experts/{expert.pk}/{uuid.uuid4().hex}"
    saved = [default_storage.save(f"{folder}/manifest.json", ContentFile(manifest_bytes)),
             default_storage.save(f"{folder}/weights.safetensors", ContentFile(weights_bytes))]
    n_params = sum(_numel(spec["shape"]) for spec in manifest["tensors"].values())
    fields = dict(
        kind=manifest["kind"], manifest=manifest, manifest_file=saved[0], weights=saved[1],
        weights_sha256=sha256, size_bytes=len(weights_bytes),
        backbone_fingerprint=manifest["backbone"]["fingerprint"], n_parameters=n_params,
        checks=checks, status=ExpertVersion.Status.VALIDATING,
    )
    try:
        with transaction.atomic():
            Expert.objects.select_for_update().get(pk=expert.pk)
            if version is None:
                version = ExpertVersion.objects.create(
                    expert=expert, number=_next_number(expert), source=source,
                    answers_request=request, training_params=training_params or {}, **fields)
            else:
                for key, value in fields.items():
                    setattr(version, key, value)
                version.save()
            job = job_create(kind=Job.Kind.VALIDATE_EXPERT, user=user,
                             params={"version_id": version.pk})
            version.training_params = {**version.training_params, "validation_job": job.pk}
            version.save(update_fields=["training_params"])
    except IntegrityError:
        for name in saved:
            default_storage.delete(name)
        _refuse_duplicate(sha256)  # names the twin that won the race
        raise DomainError("duplicate weights: another upload with identical weights just "
                          "arrived", code="duplicate", status_code=409) from None
    except BaseException:
        for name in saved:
            default_storage.delete(name)
        raise
    return version


def _numel(shape: list[int]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def expert_version_train_request(*, user, expert: Expert, dataset, kind: str = "head",
                                 epochs: int | None = None) -> ExpertVersion:
    """Ask the platform to train a version on a labeled dataset (a job on the gpu queue)."""
    _require_owner(user, expert, "train versions of it")
    if kind not in ("head", "branch", "lora"):
        raise DomainError("kind must be 'head', 'branch' or 'lora'")
    if epochs is not None and not 1 <= int(epochs) <= 100:
        raise DomainError("epochs must be between 1 and 100")
    parsed = dataset_parse(upload=dataset, labels=expert.domain.labels)
    if len(parsed.label_counts) < 2:
        raise DomainError("the dataset must contain at least two different labels")
    name = default_storage.save(f"training-data/{expert.pk}/{uuid.uuid4().hex}.jsonl",
                                ContentFile(parsed.to_jsonl()))
    try:
        with transaction.atomic():
            Expert.objects.select_for_update().get(pk=expert.pk)
            version = ExpertVersion.objects.create(
                expert=expert, number=_next_number(expert), source=ExpertVersion.Source.PLATFORM,
                status=ExpertVersion.Status.TRAINING, kind=kind,
                training_params={"dataset": name, "kind": kind, "epochs": epochs,
                                 "n_rows": len(parsed.rows)},
            )
            job = job_create(kind=Job.Kind.TRAIN_EXPERT, user=user,
                             params={"version_id": version.pk})
            version.training_params = {**version.training_params, "training_job": job.pk}
            version.save(update_fields=["training_params"])
    except BaseException:
        default_storage.delete(name)
        raise
    return version


# Review -------------------------------------------------------------------------------------

REVIEW_TRANSITIONS = {
    ReviewComment.Action.APPROVE: ({ExpertVersion.Status.AWAITING_REVIEW,
                                    ExpertVersion.Status.CHANGES_REQUESTED},
                                   ExpertVersion.Status.APPROVED),
    ReviewComment.Action.REQUEST_CHANGES: ({ExpertVersion.Status.AWAITING_REVIEW},
                                           ExpertVersion.Status.CHANGES_REQUESTED),
    ReviewComment.Action.REJECT: ({ExpertVersion.Status.AWAITING_REVIEW,
                                   ExpertVersion.Status.CHANGES_REQUESTED},
                                  ExpertVersion.Status.REJECTED),
    ReviewComment.Action.RETIRE: ({ExpertVersion.Status.APPROVED},
                                  ExpertVersion.Status.RETIRED),
}


def expert_version_review(*, user, version: ExpertVersion, action: str,
                          comment: str = "") -> ExpertVersion:
    """A maintainer's decision (or anyone involved commenting) on a version."""
    if action not in ReviewComment.Action.values:
        raise DomainError(f"action must be one of {', '.join(ReviewComment.Action.values)}")
    if action == ReviewComment.Action.COMMENT:
        if not (is_maintainer(user) or version.expert.owner_id == getattr(user, "pk", None)):
            raise forbidden("only maintainers and the owner can comment on a version")
        if not comment.strip():
            raise DomainError("comment must not be empty")
    else:
        require_maintainer(user, "review versions")
    with transaction.atomic():
        version = ExpertVersion.objects.select_for_update().select_related(
            "expert__owner").get(pk=version.pk)
        if action != ReviewComment.Action.COMMENT:
            allowed_from, target = REVIEW_TRANSITIONS[action]
            if version.status not in allowed_from:
                raise DomainError(
                    f"cannot {action.replace('_', ' ')} a version that is "
                    f"{version.get_status_display().lower()}", code="invalid_transition",
                    status_code=409)
            version.status = target
            version.reviewed_at = timezone.now()
            version.reviewed_by = user
            version.save(update_fields=["status", "reviewed_at", "reviewed_by"])
            if target in ExpertVersion.PUBLIC_STATUSES:
                # A version joined or left the approved set the rankings list; rebuild them.
                job_create(kind=Job.Kind.REFRESH_LEADERBOARDS, user=user,
                           params={"reason": f"{version.label} {target}"})
            if target == ExpertVersion.Status.APPROVED and version.answers_request_id:
                ExpertRequest.objects.filter(
                    pk=version.answers_request_id, status=ExpertRequest.Status.OPEN
                ).update(status=ExpertRequest.Status.CLOSED, closed_by=version)
        ReviewComment.objects.create(version=version, author=user, action=action,
                                     body=comment.strip())
        if user.pk != version.expert.owner_id:
            what = ("commented on" if action == ReviewComment.Action.COMMENT
                    else f"set to {version.get_status_display().lower()}:")
            notify(user=version.expert.owner, message=f"{version.label} {what} "
                   f"{comment.strip()[:150]}".strip(), link=version_link(version))
    return version


def version_link(version: ExpertVersion) -> str:
    return f"/experts/{version.expert_id}/versions/{version.number}/"


def expert_version_download(*, user, version: ExpertVersion) -> ExpertVersion:
    """Whoever may see a version may download it (ExpertVersion.is_visible_to)."""
    if not version.is_visible_to(user):
        raise forbidden("only approved versions can be downloaded")
    if not version.weights:
        raise DomainError("this version has no weights yet", code="not_found", status_code=404)
    ExpertVersion.objects.filter(pk=version.pk).update(download_count=F("download_count") + 1)
    return version


def expert_version_folder(*, version: ExpertVersion) -> tuple[str, bytes]:
    """(file name, zip bytes) of the version's folder with its model card; a LoRA expert's is
    what PeftModel.from_pretrained loads as is. Call expert_version_download first."""
    from experts.ml.model_card import folder_files, folder_zip

    with version.weights.open("rb") as fh:
        weights = fh.read()
    files = folder_files(version.manifest, weights, metrics=version.metrics,
                         license=version.expert.license)
    folder = f"{version.expert.name}-v{version.number}".replace("/", "-")
    return f"{folder}.zip", folder_zip(files, folder=folder)


# Requests and notifications -----------------------------------------------------------------


def request_create(*, user, title: str, description: str = "", domain: Domain | None = None,
                   target_metric: str = "", dataset=None) -> ExpertRequest:
    if not user.is_authenticated:
        raise DomainError("log in to post requests", code="not_authenticated", status_code=401)
    title = (title or "").strip()
    if not title or len(title) > 200:
        raise DomainError("title must be 1-200 characters")
    stored = ""
    if dataset is not None:
        parsed = dataset_parse(upload=dataset, labels=domain.labels if domain else None)
        stored = default_storage.save(f"request-datasets/{uuid.uuid4().hex}.jsonl",
                                      ContentFile(parsed.to_jsonl()))
    try:
        return ExpertRequest.objects.create(author=user, title=title, description=description,
                                            domain=domain, target_metric=target_metric,
                                            dataset=stored)
    except BaseException:
        if stored:
            default_storage.delete(stored)
        raise


def request_close(*, user, request: ExpertRequest) -> ExpertRequest:
    if not (is_maintainer(user) or request.author_id == getattr(user, "pk", None)):
        raise forbidden("only the author or a maintainer can close a request")
    request.status = ExpertRequest.Status.CLOSED
    request.save(update_fields=["status"])
    return request


def notifications_mark_read(*, user) -> int:
    return Notification.objects.filter(user=user, read=False).update(read=True)
