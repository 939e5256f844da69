"""Schemathesis against the live API: every operation fuzzed with the default checks, 0 failures.

The schema comes from the running server and the run is what `schemathesis run` does (examples,
coverage, fuzzing and stateful phases, every default check), driven through its Python engine.
The maintainer's token goes with every request, so write operations run for real, and the
`ignored_auth` check replays accepted requests without the token and with a wrong one. Path
parameters are drawn half of the time from the demo installation's rows, so reads and writes
also hit objects that exist.
"""
from __future__ import annotations

import schemathesis
from hypothesis import strategies as st
from schemathesis.engine import Status, StopReason, events, from_schema

from experts.models import Domain, ExpertRequest, ExpertVersion
from gating.models import GatingVersion
from training.models import Job

MAX_EXAMPLES = 50  # per operation and phase: ~45 s of fuzzing on 2 cores (about 3,500 calls)
POSITIVE_OK = ["2xx", "3xx", "401", "403", "404", "409", "429"]  # schemathesis's default, no 5xx
# Operations that may refuse schema-valid input with 400 for a reason no JSON schema can state.
# Every other check still runs on them; only "valid data must be accepted" also allows 400.
# (Upload fuzzing with malformed files is tests/security/test_upload_fuzzing.py's job.)
REFUSED_FOR_CONTENT = {
    "POST /api/v1/domains/{name}/splits/": "the file must be a dataset with the domain's labels",
    "POST /api/v1/experts/{id}/train/": "the file must be a dataset with the domain's labels",
    "POST /api/v1/experts/{id}/versions/": "the files must be an artifact for this domain",
    "POST /api/v1/requests/": "an attached dataset must be a dataset; domain must exist",
    "POST /api/v1/experts/": "domain must name an existing domain",
    "POST /api/v1/gating/": "expert versions must exist, be approved, share one backbone",
    "POST /api/v1/experts/{id}/versions/{number}/review/": "a comment needs its text",
}
# 503 is predict's documented answer while no model is in production, which the run itself
# brings about when it calls POST /gating/rollback/ with the maintainer's token.
SERVED_WITHOUT_MODEL = {"POST /api/v1/predict/": ["2xx", "3xx", "4xx", "503"]}
# Predict may also refuse a schema-valid top_k: at most the production model's number of
# experts, which the schema cannot know; and without a model it answers 503.
PREDICT_ACCEPTS = [*POSITIVE_OK, "400", "503"]


def _existing_path_parameters(maintainer) -> dict[str, dict]:
    """Values that name real rows, by the first segment of the path after /api/v1/."""
    version = ExpertVersion.objects.filter(status="approved").select_related("expert").first()
    request = ExpertRequest.objects.create(author=maintainer, title="Need a legal expert",
                                           description="contract clauses")
    return {
        "experts": {"id": version.expert_id, "number": version.number},
        "domains": {"name": version.expert.domain.name},
        "leaderboards": {"name": Domain.objects.first().name},
        "gating": {"id": GatingVersion.objects.latest("pk").pk},
        "jobs": {"id": Job.objects.latest("pk").pk},
        "requests": {"id": request.pk},
    }


def _config(live_api) -> schemathesis.Config:
    """What a schemathesis.toml would say; built here so no file in the checkout changes it."""
    return schemathesis.Config.from_dict({
        "cache": {"enabled": False},  # no .schemathesis/ folder in the checkout
        "headers": live_api.auth_headers,
        "request-timeout": 60,
        "generation": {"max-examples": MAX_EXAMPLES, "deterministic": True,
                       "database": "none"},
        "operations": [
            *({"include-name": name, "checks": {"positive_data_acceptance": {
                "expected-statuses": [*POSITIVE_OK, "400"]}}} for name in REFUSED_FOR_CONTENT),
            *({"include-name": name, "checks": {
                "not_a_server_error": {"expected-statuses": statuses},
                "positive_data_acceptance": {"expected-statuses": PREDICT_ACCEPTS}}}
              for name, statuses in SERVED_WITHOUT_MODEL.items()),
        ],
    })


def _load_schema(live_api, existing: dict[str, dict], *, maintainer):
    schema = schemathesis.openapi.from_url(f"{live_api.url}/api/schema/?format=json",
                                           config=_config(live_api))

    @schema.hook
    def flatmap_path_parameters(context, path_parameters):
        resource = context.operation.path.removeprefix("/api/v1/").split("/")[0]
        known = {k: v for k, v in existing.get(resource, {}).items()
                 if k in (path_parameters or {})}
        if not known:
            return st.just(path_parameters)
        return st.sampled_from([path_parameters, {**path_parameters, **known}])

    @schema.hook
    def after_call(context, case, response):
        # The run revokes the token it sends (DELETE /auth/token/): give the same key back,
        # so the rest of the run still acts as the maintainer.
        if (case.method.upper(), case.path) == ("DELETE", "/api/v1/auth/token/"):
            from rest_framework.authtoken.models import Token

            Token.objects.filter(user=maintainer).delete()
            Token.objects.create(user=maintainer, key=live_api.token)

    return schema


def _failures(stream, tested: dict[str, int]) -> tuple[list[str], events.EngineFinished | None]:
    """One report per distinct failure (check, operation, reproduction) and the final event;
    counts the requests sent per operation into `tested`."""
    reports: dict[tuple, str] = {}
    finished = None
    for event in stream:
        if isinstance(event, events.ScenarioFinished) and event.status != Status.SKIP:
            label = event.recorder.label
            tested[label] = tested.get(label, 0) + len(event.recorder.interactions)
        if isinstance(event, events.ScenarioFinished) and event.status == Status.FAILURE:
            for case_id, checks in event.recorder.checks.items():
                for check in checks:
                    info = check.failure_info
                    if info is None:
                        continue
                    key = (event.recorder.label, check.name, info.failure.title)
                    response = event.recorder.interactions.get(case_id)
                    status = response.response.status_code if response and response.response \
                        else "?"
                    reports.setdefault(key, (
                        f"[{check.name}] {event.recorder.label} -> {status}: "
                        f"{info.failure.title}\n{info.failure.message}\n"
                        f"reproduce: {info.code_sample}"))
        elif isinstance(event, events.NonFatalError):
            reports.setdefault(("error", event.label, str(event.info)),
                               f"[error] {event.label}: {event.info.title}\n{event.info}")
        elif isinstance(event, events.FatalError):
            reports[("fatal",)] = f"[fatal] {event.exception!r}"
        elif isinstance(event, events.EngineFinished):
            finished = event
            for failure in event.failures:
                reports.setdefault(("run", failure.title), f"[run] {failure.title}\n"
                                                          f"{failure.message}")
    return list(reports.values()), finished


def test_it_keeps_its_api_contract(live_api, maintainer):
    schema = _load_schema(live_api, _existing_path_parameters(maintainer), maintainer=maintainer)
    checks = schema.config.checks_config_for()
    assert checks.ignored_auth.enabled and checks.not_a_server_error.enabled

    tested: dict[str, int] = {}
    reports, finished = _failures(from_schema(schema).execute(), tested)

    assert finished is not None and finished.stop_reason == StopReason.COMPLETED
    print(f"schemathesis: {sum(tested.values())} requests to {len(schema)} operations in "
          f"{finished.running_time:.0f}s")
    operations = {f"{op.ok().method.upper()} {op.ok().path}" for op in schema.get_all_operations()}
    untested = sorted(label for label in operations if not tested.get(label))
    assert not untested, f"never exercised: {untested}"
    assert not reports, (f"{len(reports)} failure(s):\n\n" + "\n\n".join(reports)
                         + f"\n\nserver log:\n{live_api.server.log_tail(2000)}")
