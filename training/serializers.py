from __future__ import annotations

from rest_framework import serializers

from moecollab_site.roles import is_maintainer
from training.models import Job


class JobSerializer(serializers.ModelSerializer):
    """A job as its starter and maintainers see it: the traceback part of `error` only for
    maintainers (the context's request says who asks; without one, the one-line reason)."""

    created_by = serializers.CharField(source="created_by.username", default=None,
                                       allow_null=True, read_only=True)
    progress = serializers.FloatField(source="progress_fraction", read_only=True)
    error = serializers.SerializerMethodField(
        help_text="why the job failed; maintainers also get the traceback after a blank line")

    class Meta:
        model = Job
        fields = [
            "id", "kind", "status", "queue", "created_by", "params", "progress",
            "progress_current", "progress_total", "progress_message", "log_tail", "metrics",
            "error", "cancel_requested", "created_at", "started_at", "finished_at",
        ]
        read_only_fields = fields

    def get_error(self, job) -> str:
        if not hasattr(self, "_maintainer"):  # once per list, not once per job
            request = self.context.get("request")
            self._maintainer = request is not None and is_maintainer(request.user)
        return job.error_for(None, maintainer=self._maintainer)


# Kinds a user may start directly; the others are started by their own features.
JOB_CREATE_KINDS = [(Job.Kind.SELF_CHECK.value, Job.Kind.SELF_CHECK.label)]


class SelfCheckParamsSerializer(serializers.Serializer):
    device = serializers.ChoiceField(choices=["auto", "cpu", "cuda"], required=False,
                                     help_text="where the worker loads the backbone")



class JobCreateSerializer(serializers.Serializer):
    """Only known, typed parameters reach the Job row; unknown keys are refused (400)."""

    kind = serializers.ChoiceField(choices=JOB_CREATE_KINDS)
    params = SelfCheckParamsSerializer(required=False, default=dict)
