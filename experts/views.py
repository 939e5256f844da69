"""HTML pages of the marketplace. Each write calls one service; its DomainError becomes a 403 page,
a 404, or the form again with the service's exact message and status."""
from __future__ import annotations

from pathlib import Path

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db.models import Count, Q
from django.http import FileResponse, Http404, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from experts import selectors, services
from experts.forms import (
    DomainCreateForm,
    DomainGuideForm,
    ExpertCreateForm,
    ExpertEditForm,
    ExpertFilterForm,
    RequestCreateForm,
    ReviewForm,
    SplitUploadForm,
    TrainRequestForm,
    VersionUploadForm,
)
from experts.ml.model_card import dev_metrics, model_card, training_provenance
from experts.models import DataSplit, Domain, Expert, ExpertRequest, ExpertVersion
from experts.view_helpers import comparison, current_job_id, latest_visible, review_actions
from moecollab_site.errors import FORBIDDEN, DomainError
from moecollab_site.roles import is_maintainer

PAGE_SIZE = 20


# Shared plumbing ----------------------------------------------------------------------------


def _forbidden(request, message: str):
    if _wants_json(request):
        return _json_error(message, FORBIDDEN, 403)
    return render(request, "experts/forbidden.html", {"message": message}, status=403)


def _wants_json(request) -> bool:
    return request.headers.get("x-requested-with") == "XMLHttpRequest"


def _json_error(message: str, code: str, status: int):
    return JsonResponse({"error": {"code": code, "message": message}}, status=status)


def _refused(request, exc: DomainError, template: str, context: dict):
    """Show a service's refusal: a 403 page, a 404, or the form again with the exact message."""
    if _wants_json(request):
        return _json_error(exc.message, exc.code, exc.status_code)
    if exc.status_code == 403:
        return _forbidden(request, exc.message)
    if exc.status_code == 404:
        raise Http404(exc.message)
    context["form"].add_error(None, exc.message)
    return render(request, template, context, status=exc.status_code)


def _denied(request, exc: DomainError):
    """A refusal with no form to show it on."""
    if exc.status_code == 404:
        raise Http404(exc.message)
    if exc.status_code == 403:
        return _forbidden(request, exc.message)
    return render(request, "experts/forbidden.html",
                  {"message": exc.message, "title": "Refused"}, status=exc.status_code)


def _invalid(request, template: str, context: dict):
    """A form that failed its own field checks: 400, as the API answers a bad request."""
    if _wants_json(request):
        form = context["form"]
        message = "; ".join(f"{name}: {' '.join(errs)}" if name != "__all__" else " ".join(errs)
                            for name, errs in form.errors.items())
        return _json_error(message, "invalid", 400)
    return render(request, template, context, status=400)


def _owner_only(request, expert: Expert, what: str):
    """The services' owner rule, checked before a form is even shown; None when allowed."""
    if expert.owner_id != request.user.pk:
        return _forbidden(request, f"only the owner of expert {expert} can {what}")
    return None


def _posted(request, *, files: bool = False) -> tuple:
    """Form data for a POST (bound even when empty, so missing fields are reported), else none."""
    if request.method != "POST":
        return (None, None) if files else (None,)
    return (request.POST, request.FILES) if files else (request.POST,)


def _page(request, items):
    return Paginator(items, PAGE_SIZE).get_page(request.GET.get("page"))


def _query_without_page(request) -> str:
    params = request.GET.copy()
    params.pop("page", None)
    return params.urlencode()


def _version_or_404(request, pk: int, number: int) -> ExpertVersion:
    expert = get_object_or_404(Expert.objects.select_related("owner", "domain"), pk=pk)
    version = selectors.version_get(user=request.user, expert=expert, number=number)
    if version is None:
        raise Http404("no such version")
    return version


def _version_url(version: ExpertVersion) -> str:
    return reverse("experts-version", args=[version.expert_id, version.number])


# Experts ------------------------------------------------------------------------------------


def index(request):
    form = ExpertFilterForm(request.GET or None)
    filters = form.cleaned_data if form.is_valid() else {}
    experts = selectors.expert_list(
        user=request.user, domain=filters.get("domain"), kind=filters.get("kind"),
        status=filters.get("status"), contributor=filters.get("contributor", "").strip(),
        text=filters.get("q", "").strip())
    page = _page(request, experts)
    maintainer = is_maintainer(request.user)
    rows = [{"expert": e, "latest": latest_visible(e.versions.all(), user=request.user,
                                                   maintainer=maintainer)} for e in page]
    return render(request, "experts/index.html", {
        "form": form, "page": page, "rows": rows, "query": _query_without_page(request)})


@login_required
def expert_new(request):
    form = ExpertCreateForm(*_posted(request))
    context = {"form": form}
    if request.method != "POST":
        return render(request, "experts/expert_form.html", context)
    if not form.is_valid():
        return _invalid(request, "experts/expert_form.html", context)
    try:
        expert = services.expert_create(user=request.user, **form.cleaned_data)
    except DomainError as exc:
        return _refused(request, exc, "experts/expert_form.html", context)
    messages.success(request, f"Expert {expert.name} created. Upload a version or train one.")
    return redirect("experts-detail", pk=expert.pk)


def expert_detail(request, pk: int):
    expert = get_object_or_404(Expert.objects.select_related("owner", "domain"), pk=pk)
    versions = list(selectors.versions_visible(user=request.user, expert=expert))
    approved = [v for v in versions if v.status == ExpertVersion.Status.APPROVED]
    featured = approved[0] if approved else (versions[0] if versions else None)
    gating, in_production = (selectors.version_production(version=featured)
                             if featured else (None, False))
    return render(request, "experts/expert_detail.html", {
        "expert": expert, "versions": versions, "featured": featured,
        "is_owner": expert.owner_id == request.user.pk,
        "downloads": sum(v.download_count for v in versions),
        "production": gating, "in_production": in_production,
        "credit": selectors.version_credit(version=featured) if featured else None,
        "labels": (featured.manifest.get("labels") if featured else None) or expert.domain.labels,
    })


@login_required
def expert_edit(request, pk: int):
    expert = get_object_or_404(Expert.objects.select_related("owner", "domain"), pk=pk)
    if refusal := _owner_only(request, expert, "edit it"):
        return refusal
    fields = ["description", "license", "intended_use", "training_data"]
    form = ExpertEditForm(*_posted(request),
                          initial={name: getattr(expert, name) for name in fields})
    context = {"form": form, "expert": expert}
    if request.method != "POST":
        return render(request, "experts/expert_edit.html", context)
    if not form.is_valid():
        return _invalid(request, "experts/expert_edit.html", context)
    try:
        services.expert_update(user=request.user, expert=expert, **form.cleaned_data)
    except DomainError as exc:
        return _refused(request, exc, "experts/expert_edit.html", context)
    messages.success(request, "Model card saved.")
    return redirect("experts-detail", pk=expert.pk)


# Versions -----------------------------------------------------------------------------------


@login_required
def version_upload(request, pk: int):
    """Manifest + weights; posted by upload.js with a progress bar, or as a plain form."""
    expert = get_object_or_404(Expert.objects.select_related("owner", "domain"), pk=pk)
    if refusal := _owner_only(request, expert, "upload versions of it"):
        return refusal
    form = VersionUploadForm(*_posted(request, files=True), domain=expert.domain)
    context = {"form": form, "expert": expert}
    if request.method != "POST":
        return render(request, "experts/version_upload.html", context)
    if not form.is_valid():
        return _invalid(request, "experts/version_upload.html", context)
    try:
        data = form.cleaned_data
        version = services.expert_version_upload(
            user=request.user, expert=expert, manifest=data["manifest"],
            weights=data["weights"], adapter_config=data["adapter_config"],
            adapter_model=data["adapter_model"], labels=data["labels"] or None,
            answers_request=data["answers_request"])
    except DomainError as exc:
        return _refused(request, exc, "experts/version_upload.html", context)
    return _created(request, version, f"Version {version.number} uploaded; validation is queued.")


@login_required
def version_train(request, pk: int):
    expert = get_object_or_404(Expert.objects.select_related("owner", "domain"), pk=pk)
    if refusal := _owner_only(request, expert, "train versions of it"):
        return refusal
    form = TrainRequestForm(*_posted(request, files=True))
    context = {"form": form, "expert": expert}
    if request.method != "POST":
        return render(request, "experts/version_train.html", context)
    if not form.is_valid():
        return _invalid(request, "experts/version_train.html", context)
    try:
        version = services.expert_version_train_request(
            user=request.user, expert=expert, dataset=form.cleaned_data["dataset"],
            kind=form.cleaned_data["kind"], epochs=form.cleaned_data["epochs"])
    except DomainError as exc:
        return _refused(request, exc, "experts/version_train.html", context)
    return _created(request, version,
                    f"Version {version.number}: training is queued on the gpu queue.")


def _created(request, version: ExpertVersion, message: str):
    """After a new version: its page, or for upload.js a JSON pointer to it (201)."""
    messages.success(request, message)
    url = _version_url(version)
    if _wants_json(request):
        return JsonResponse({"redirect": url, "number": version.number}, status=201)
    return redirect(url)


def _version_context(request, version: ExpertVersion) -> dict:
    expert = version.expert
    maintainer = is_maintainer(request.user)
    is_owner = expert.owner_id == request.user.pk
    best = selectors.best_version_for_domain(domain=expert.domain, exclude=version)
    return {
        "version": version, "expert": expert, "is_owner": is_owner,
        "comments": version.comments.all(),
        "can_comment": maintainer or is_owner,
        "actions": review_actions(version) if maintainer else [],
        "comparison": comparison(version, best),
        "busy": version.is_busy,
        "watch_job": current_job_id(version),
        "training_job": version.training_params.get("training_job"),
        "validation_job": version.training_params.get("validation_job"),
        # Whoever may see a version may download it (services.expert_version_download).
        "can_download": bool(version.weights),
        "backbone": version.manifest.get("backbone", {}),
        **_card_context(request, version),
    }


def _card_context(request, version: ExpertVersion) -> dict:
    """What the model card adds to a version page: labels, provenance, claimed dev metrics,
    the checks once each, production membership and credit, and the predict API's address."""
    gating, in_production = selectors.version_production(version=version)
    return {
        "labels": version.manifest.get("labels") or version.expert.domain.labels,
        "checks": selectors.version_checks(version=version),
        "provenance": training_provenance(version.manifest),
        "dev_metrics": dev_metrics(version.manifest),
        "production": gating,
        "in_production": in_production,
        "credit": selectors.version_credit(version=version),
        "predict_url": request.build_absolute_uri(reverse("api-predict")),
    }


def version_detail(request, pk: int, number: int):
    version = _version_or_404(request, pk, number)
    return render(request, "experts/version_detail.html", _version_context(request, version))


@login_required
@require_POST
def version_review(request, pk: int, number: int):
    """A comment (owner, maintainers) or a review decision (maintainers) on a version."""
    version = _version_or_404(request, pk, number)
    form = ReviewForm(request.POST)
    if not form.is_valid():
        messages.error(request, "; ".join(" ".join(e) for e in form.errors.values()))
        return render(request, "experts/version_detail.html",
                      _version_context(request, version), status=400)
    try:
        version = services.expert_version_review(
            user=request.user, version=version, action=form.cleaned_data["action"],
            comment=form.cleaned_data["comment"])
    except DomainError as exc:
        if exc.status_code in (403, 404):
            return _denied(request, exc)
        messages.error(request, exc.message)
        return render(request, "experts/version_detail.html",
                      _version_context(request, version), status=exc.status_code)
    if form.cleaned_data["action"] == "comment":
        messages.success(request, "Comment added.")
    else:
        messages.success(request, f"Version {version.number} is now "
                                  f"{version.get_status_display().lower()}.")
    return redirect(_version_url(version))


def version_download(request, pk: int, number: int):
    version = _version_or_404(request, pk, number)
    which = request.GET.get("file", "weights")
    if which not in ("weights", "manifest", "folder", "readme"):
        raise Http404("file must be 'weights', 'manifest', 'folder' or 'readme'")
    if which == "readme":
        return _readme(version)
    try:
        services.expert_version_download(user=request.user, version=version)
    except DomainError as exc:
        return _denied(request, exc)
    if which == "folder":
        name, data = services.expert_version_folder(version=version)
        return HttpResponse(data, content_type="application/zip",
                            headers={"Content-Disposition": f'attachment; filename="{name}"'})
    field = version.weights if which == "weights" else version.manifest_file
    filename = f"{version.expert.name}-v{version.number}-" + (
        "weights.safetensors" if which == "weights" else "manifest.json")
    return FileResponse(field.open("rb"), as_attachment=True, filename=filename)


def _readme(version: ExpertVersion):
    """The Hub model card alone (the README.md of ?file=folder), for whoever sees the version.
    Not counted as a download: reading a card is not taking the weights."""
    if not version.weights or not version.manifest.get("kind"):
        raise Http404("this version has no artifact yet, so no model card")
    body = model_card(version.manifest, metrics=version.metrics, license=version.expert.license)
    name = f"{version.expert.name}-v{version.number}-README.md".replace("/", "-")
    return HttpResponse(body.encode(), content_type="text/markdown; charset=utf-8",
                        headers={"Content-Disposition": f'attachment; filename="{name}"'})


@login_required
def review_queue(request):
    if not is_maintainer(request.user):
        return _forbidden(request, "only maintainers see the review queue")
    rows = []
    for version in selectors.review_queue():
        best = selectors.best_version_for_domain(domain=version.expert.domain, exclude=version)
        rows.append({"version": version, "comparison": comparison(version, best)})
    return render(request, "experts/review_queue.html", {"rows": rows})


# Domains ------------------------------------------------------------------------------------


def domain_list(request):
    domains = selectors.domain_list().annotate(n_experts=Count("experts")).order_by("name")
    return render(request, "experts/domain_list.html", {"domains": domains})


@login_required
def domain_new(request):
    if not is_maintainer(request.user):
        return _forbidden(request, "only maintainers can create domains")
    form = DomainCreateForm(*_posted(request))
    context = {"form": form}
    if request.method != "POST":
        return render(request, "experts/domain_form.html", context)
    if not form.is_valid():
        return _invalid(request, "experts/domain_form.html", context)
    try:
        domain = services.domain_create(user=request.user, **form.cleaned_data)
    except DomainError as exc:
        return _refused(request, exc, "experts/domain_form.html", context)
    messages.success(request, f"Domain {domain.name} created. Upload its splits next.")
    return redirect("experts-domain", name=domain.name)


def _domain_context(request, domain: Domain, split_form=None) -> dict:
    return {
        "domain": domain,
        "splits": domain.splits.all(),
        "can_see_private": selectors.can_see_private_data(request.user),
        "split_form": split_form or SplitUploadForm(),
        "guide_form": DomainGuideForm(domain=domain),
        "board": selectors.leaderboard_domain(domain=domain),
        "experts": selectors.expert_list(user=request.user, domain=domain.name)[:PAGE_SIZE],
    }


def domain_detail(request, name: str):
    domain = get_object_or_404(Domain, name=name)
    return render(request, "experts/domain_detail.html", _domain_context(request, domain))


@login_required
@require_POST
def split_upload(request, name: str):
    domain = get_object_or_404(Domain, name=name)
    if not is_maintainer(request.user):
        return _forbidden(request, "only maintainers can upload domain data")
    form = SplitUploadForm(request.POST, request.FILES)
    context = _domain_context(request, domain, form)
    context["form"] = form
    if not form.is_valid():
        return _invalid(request, "experts/domain_detail.html", context)
    try:
        split = services.domain_split_upload(
            user=request.user, domain=domain, kind=form.cleaned_data["kind"],
            upload=form.cleaned_data["file"],
            # Unticked means "the default": test private, train and dev public.
            is_private=True if form.cleaned_data["is_private"] else None)
    except DomainError as exc:
        return _refused(request, exc, "experts/domain_detail.html", context)
    messages.success(request, f"{split.kind} split stored: {split.n_rows} rows"
                              f"{' (private)' if split.is_private else ''}.")
    return redirect("experts-domain", name=domain.name)


@login_required
@require_POST
def domain_guide(request, name: str):
    """Maintainers set the playground examples and the plain words for the labels."""
    domain = get_object_or_404(Domain, name=name)
    if not is_maintainer(request.user):
        return _forbidden(request, "only maintainers can edit a domain's examples and label help")
    form = DomainGuideForm(request.POST, domain=domain)
    context = _domain_context(request, domain)
    context["form"] = context["guide_form"] = form
    if not form.is_valid():
        return _invalid(request, "experts/domain_detail.html", context)
    try:
        services.domain_guide_update(user=request.user, domain=domain,
                                     examples=form.cleaned_data["examples"],
                                     label_help=form.cleaned_data["label_help"])
    except DomainError as exc:
        return _refused(request, exc, "experts/domain_detail.html", context)
    messages.success(request, f"Examples and label help of {domain.name} saved; the playground "
                              "shows them now.")
    return redirect("experts-domain", name=domain.name)


def split_download(request, name: str, kind: str):
    split = get_object_or_404(DataSplit, domain__name=name, kind=kind)
    if split.is_private and not selectors.can_see_private_data(request.user):
        return _forbidden(request, "private splits are only available to maintainers")
    return FileResponse(split.file.open("rb"), as_attachment=True,
                        filename=f"{name}-{kind}.jsonl")


# Requests board -----------------------------------------------------------------------------


def request_list(request):
    status = request.GET.get("status", "open")
    if status not in ExpertRequest.Status.values:
        status = ""
    visible = ExpertVersion.objects.visible_to(request.user)
    page = _page(request, selectors.request_list(user=request.user, status=status or None)
                 .annotate(n_answers=Count("answers", filter=Q(answers__in=visible)))
                 .order_by("-created_at", "-id"))
    return render(request, "experts/request_list.html", {
        "page": page, "status": status, "statuses": ExpertRequest.Status.choices,
        "query": _query_without_page(request)})


@login_required
def request_new(request):
    form = RequestCreateForm(*_posted(request, files=True))
    context = {"form": form}
    if request.method != "POST":
        return render(request, "experts/request_form.html", context)
    if not form.is_valid():
        return _invalid(request, "experts/request_form.html", context)
    try:
        req = services.request_create(user=request.user, **form.cleaned_data)
    except DomainError as exc:
        return _refused(request, exc, "experts/request_form.html", context)
    messages.success(request, "Request posted.")
    return redirect("experts-request", pk=req.pk)


def request_detail(request, pk: int):
    req = get_object_or_404(selectors.request_list(user=request.user), pk=pk)
    maintainer = is_maintainer(request.user)
    answers = list(req.answers.all())  # the visible ones (the selector's prefetch)
    return render(request, "experts/request_detail.html", {
        "req": req, "answers": answers,
        "can_close": req.status == ExpertRequest.Status.OPEN
        and (maintainer or req.author_id == request.user.pk),
    })


@login_required
@require_POST
def request_close(request, pk: int):
    req = get_object_or_404(ExpertRequest, pk=pk)
    try:
        services.request_close(user=request.user, request=req)
    except DomainError as exc:
        return _denied(request, exc)
    messages.success(request, f"Request #{req.pk} closed.")
    return redirect("experts-request", pk=req.pk)


def request_dataset(request, pk: int):
    req = get_object_or_404(ExpertRequest, pk=pk)
    if not req.dataset:
        raise Http404("this request has no dataset")
    return FileResponse(req.dataset.open("rb"), as_attachment=True,
                        filename=f"request-{req.pk}-{Path(req.dataset.name).name}")


# Leaderboards and notifications -------------------------------------------------------------


LEADERBOARD_PAGE_TOP = 20  # per domain on the overview; the domain page has the full board


def leaderboards(request):
    boards = selectors.leaderboard_domains(top=LEADERBOARD_PAGE_TOP)
    return render(request, "experts/leaderboards.html", {
        "top": LEADERBOARD_PAGE_TOP,
        "boards": [(d, rows) for d, rows in boards if rows],
        "empty_domains": [d for d, rows in boards if not rows],
        "contributors": selectors.leaderboard_contributors(),
    })


@login_required
def notifications(request):
    items = selectors.notifications_for(user=request.user)
    return render(request, "experts/notifications.html", {
        "page": _page(request, items),
        "unread": items.filter(read=False).count(),
    })


@login_required
@require_POST
def notifications_read(request):
    n = services.notifications_mark_read(user=request.user)
    messages.success(request, f"{n} notification{'s' if n != 1 else ''} marked read.")
    return redirect("experts-notifications")

