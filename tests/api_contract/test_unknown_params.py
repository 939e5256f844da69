"""The API says no instead of ignoring: an unknown query parameter or body field is a 400 in
the one error shape that names it and what the endpoint accepts. Every operation of the
generated schema is walked, so a new endpoint is covered without a new test."""
from __future__ import annotations

import re

import pytest
from drf_spectacular.generators import SchemaGenerator

from experts.models import Domain, Expert, ExpertRequest
from gating.models import GatingVersion
from tests.helpers import api_client_for, make_expert, make_version
from training.models import Job

ACCEPTS = re.compile(r"it accepts: (.*)$")
WRITES = ("post", "put", "patch", "delete")


@pytest.fixture(scope="module")
def schema(django_db_blocker):
    with django_db_blocker.unblock():
        return SchemaGenerator().get_schema(request=None, public=True)


def _operations(schema, methods) -> list[tuple[str, str, dict]]:
    return [(method, path, op) for path, ops in schema["paths"].items()
            if path.startswith("/api/v1/") for method, op in ops.items() if method in methods]


@pytest.fixture
def world(owner, maintainer, news):
    """One row behind every kind of path parameter, visible to the maintainer."""
    expert = make_expert(owner, news, "news-mlp")
    version = make_version(expert, with_files=True)
    return {
        "name": news.name, "id": {"experts": expert.pk}, "number": version.number,
        "gating": GatingVersion.objects.create(number=1).pk,
        "jobs": Job.objects.create(kind=Job.Kind.SELF_CHECK, created_by=maintainer).pk,
        "requests": ExpertRequest.objects.create(author=maintainer, title="legal",
                                                 description="contracts").pk,
    }


def _url(path: str, world: dict) -> str:
    resource = path.removeprefix("/api/v1/").split("/")[0]
    ids = {"experts": world["id"]["experts"], "gating": world["gating"], "jobs": world["jobs"],
           "requests": world["requests"]}
    return (path.replace("{name}", world["name"]).replace("{number}", str(world["number"]))
            .replace("{id}", str(ids.get(resource, 0))))


def _refusal(response, name: str) -> set[str]:
    """Checks the one error shape naming `name`; returns the names it says are accepted."""
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "unknown_parameter"
    assert name in error["fields"] and name in error["message"]
    accepted = ACCEPTS.search(error["fields"][name][0])
    assert accepted, error
    return {n for n in accepted.group(1).split(", ") if n != "none"}


def test_it_walks_every_read_and_write_operation(schema):
    assert len(_operations(schema, ("get",))) >= 20
    assert len(_operations(schema, WRITES)) >= 15


def test_it_refuses_an_unknown_query_parameter_on_every_read(schema, world, maintainer):
    client = api_client_for(maintainer)
    for _method, path, op in _operations(schema, ("get",)):
        url = _url(path, world)
        documented = {p["name"] for p in op.get("parameters", []) if p["in"] == "query"}
        response = client.get(url, {"nonsense": "1"})
        accepted = _refusal(response, "nonsense")
        # What the endpoint reads is exactly what the schema documents (plus DRF's ?format=).
        assert accepted == documented | {"format"}, path
        assert client.get(url, {"format": "json"}).status_code != 400, path


def test_it_refuses_query_parameters_on_writes_that_read_none(maintainer, news):
    response = api_client_for(maintainer).post("/api/v1/domains/?domain=news",
                                               {"name": "legal", "labels": ["a", "b"]},
                                               format="json")
    assert _refusal(response, "domain") == {"format"}
    assert not Domain.objects.filter(name="legal").exists()


def test_it_filters_experts_by_owner_the_name_the_answers_use(owner, stranger, news):
    make_expert(owner, news, "alice-news")
    make_expert(stranger, news, "mallory-news")
    client = api_client_for(None)
    body = client.get("/api/v1/experts/", {"owner": "alice"}).json()
    assert [(e["name"], e["owner"]) for e in body["results"]] == [("alice-news", "alice")]
    names = {e["name"] for e in client.get("/api/v1/experts/").json()["results"]}
    assert names == {"alice-news", "mallory-news"}
    assert client.get("/api/v1/experts/", {"owner": "nobody"}).json()["results"] == []


def test_it_tells_a_client_of_the_old_contributor_filter_to_send_owner(owner, news):
    make_expert(owner, news, "alice-news")
    response = api_client_for(None).get("/api/v1/experts/", {"contributor": "alice"})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "unknown_parameter"
    assert "contributor" in error["message"] and "?owner=" in error["message"]


def _send(client, method: str, url: str, op: dict, body: dict):
    content = op.get("requestBody", {}).get("content", {})
    fmt = "multipart" if content and "application/json" not in content else "json"
    return getattr(client, method)(url, body, format=fmt)


def test_it_refuses_an_unknown_body_field_on_every_write(schema, world, maintainer):
    before = (Expert.objects.count(), Job.objects.count(), ExpertRequest.objects.count())
    for method, path, op in _operations(schema, WRITES):
        client = api_client_for(None if path == "/api/v1/auth/token/" and method == "post"
                                else maintainer)
        # Predict first asks for its texts (without a production model they are all it checks).
        body = {"texts": ["hello"]} if path == "/api/v1/predict/" else {}
        response = _send(client, method, _url(path, world), op, {**body, "nonsense": "1"})
        accepted = _refusal(response, "nonsense")
        if "requestBody" not in op:
            assert accepted == set(), f"{method} {path} takes no body"
        else:
            ref = next(iter(op["requestBody"]["content"].values()))["schema"]["$ref"]
            component = schema["components"]["schemas"][ref.rsplit("/", 1)[1]]
            writable = {n for n, p in component["properties"].items() if not p.get("readOnly")}
            assert accepted == writable, f"{method} {path}"
            assert component["additionalProperties"] is False  # the schema says so too
    # Nothing was done: no expert, job or request created, the token still works.
    assert (Expert.objects.count(), Job.objects.count(), ExpertRequest.objects.count()) == before
    assert api_client_for(maintainer).get("/api/v1/notifications/").status_code == 200


def test_it_refuses_unknown_fields_inside_nested_objects_and_read_only_ones(maintainer):
    client = api_client_for(maintainer)
    response = client.post("/api/v1/jobs/", {"kind": "self_check",
                                             "params": {"devcie": "cpu"}}, format="json")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["fields"] == {"params": {"devcie": [
        "not a field of this request; it accepts: device"]}}
    assert Job.objects.count() == 0
    response = client.post("/api/v1/requests/", {"title": "legal", "description": "x",
                                                 "status": "closed"}, format="json")
    assert response.status_code == 400
    assert "read-only" in response.json()["error"]["fields"]["status"][0]
    assert ExpertRequest.objects.count() == 0


def test_it_still_accepts_every_known_field(maintainer, news):
    client = api_client_for(maintainer)
    response = client.post("/api/v1/jobs/", {"kind": "self_check", "params": {"device": "cpu"}},
                           format="json")
    assert response.status_code == 201, response.content
    assert response.json()["params"] == {"device": "cpu"}
    response = client.get("/api/v1/experts/", {"domain": "news", "kind": "head", "owner": "maya",
                                               "q": "x", "status": "approved", "page": 1})
    assert response.status_code == 200 and response.json()["count"] == 0
