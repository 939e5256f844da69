from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import Http404, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from moecollab_site.errors import DomainError
from moecollab_site.roles import is_maintainer
from training import selectors, services
from training.models import Job
from training.serializers import JobSerializer


def job_list_page(request):
    jobs = selectors.job_list(user=request.user, status=request.GET.get("status") or None)
    page = Paginator(jobs, 25).get_page(request.GET.get("page"))
    return render(request, "training/job_list.html", {"page": page, "statuses": Job.Status})


def _visible_job(request, pk: int) -> Job:
    job = selectors.job_get(user=request.user, pk=pk)
    if job is None:
        raise Http404("no such job")
    return job


def _subject(job: Job, user) -> tuple[str, str]:
    """(label, page) of the object the job works on, when this user may open it."""
    if "version_id" in job.params:
        from experts.models import ExpertVersion
        from experts.services import version_link

        version = ExpertVersion.objects.select_related("expert__owner").filter(
            pk=job.params["version_id"]).first()
        if version is not None and version.is_visible_to(user):
            return f"expert {version.label}", version_link(version)
    elif "gating_version_id" in job.params:
        from gating.models import GatingVersion

        gating = GatingVersion.objects.filter(pk=job.params["gating_version_id"]).first()
        if gating is not None:
            return f"gating v{gating.number}", gating.link
    return "", ""


def _words(job: Job, user) -> dict:
    """What the job pages say about a job besides its fields: why it failed and what to do,
    its outcome, its metrics as rows; the traceback only for maintainers."""
    return {
        "reason": job.error_summary,
        "traceback": job.traceback if is_maintainer(user) else "",
        "advice": job.advice,
        "outcome": job.outcome,
        "metric_rows": job.metric_rows(),
    }


def job_detail_page(request, pk: int):
    job = _visible_job(request, pk)
    subject, subject_link = _subject(job, request.user)
    return render(request, "training/job_detail.html",
                  {"job": job, "subject": subject, "subject_link": subject_link,
                   **_words(job, request.user)})


def job_status_json(request, pk: int):
    """What the detail page polls for its progress bar and its words."""
    job = _visible_job(request, pk)
    return JsonResponse({**JobSerializer(job, context={"request": request}).data,
                         **_words(job, request.user)})


@require_POST
def job_start(request):
    if not is_maintainer(request.user):
        raise PermissionDenied("only maintainers can start jobs")
    kind = request.POST.get("kind", Job.Kind.SELF_CHECK)
    if kind != Job.Kind.SELF_CHECK:
        messages.error(request, f"jobs of kind {kind!r} are started from their own pages")
        return redirect("job-list")
    job = services.job_create(kind=kind, user=request.user)
    messages.success(request, f"Job {job.pk} queued.")
    return redirect("job-detail", pk=job.pk)


@require_POST
def job_cancel(request, pk: int):
    if not is_maintainer(request.user):
        raise PermissionDenied("only maintainers can cancel jobs")
    try:
        services.job_cancel(job=get_object_or_404(Job, pk=pk))
        messages.success(request, f"Job {pk}: cancel requested.")
    except DomainError as exc:
        messages.error(request, exc.message)
    return redirect("job-detail", pk=pk)
