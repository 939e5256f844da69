"""The command line calls only what the OpenAPI description documents: the API is the contract."""
from __future__ import annotations

import json

import pytest
from django.core.management import call_command

# (method, path, fields of the 200/201 answer the command line reads)
CALLS = [
    ("post", "/api/v1/auth/token/", {"token"}),
    ("delete", "/api/v1/auth/token/", set()),
    ("get", "/api/v1/platform/", {"backbone", "upload_max_bytes"}),
    ("get", "/api/v1/notifications/", set()),
    ("get", "/api/v1/experts/", {"count", "next", "results"}),
    ("post", "/api/v1/experts/", {"id", "name", "domain", "owner"}),
    ("get", "/api/v1/experts/{id}/", {"id", "name", "domain", "owner", "latest_version"}),
    ("get", "/api/v1/experts/{id}/versions/", set()),
    ("post", "/api/v1/experts/{id}/versions/",
     {"number", "status", "kind", "size_bytes", "weights_sha256", "checks", "metrics", "error"}),
    ("get", "/api/v1/experts/{id}/versions/{number}/", {"number", "status", "checks"}),
    ("get", "/api/v1/experts/{id}/versions/{number}/download/", set()),
    ("post", "/api/v1/predict/", {"gating_version", "ms", "predictions"}),
]


@pytest.fixture(scope="module")
def schema(tmp_path_factory, django_db_blocker):
    out = tmp_path_factory.mktemp("schema") / "schema.json"
    with django_db_blocker.unblock():
        call_command("spectacular", "--format", "openapi-json", "--file", str(out))
    return json.loads(out.read_text())


def _fields(schema: dict, ref: dict) -> set[str]:
    if "$ref" in ref:
        ref = schema["components"]["schemas"][ref["$ref"].rsplit("/", 1)[1]]
    return set(ref.get("properties", {}))


@pytest.mark.parametrize(("method", "path", "fields"), CALLS, ids=[f"{m} {p}" for m, p, _ in CALLS])
def test_it_calls_documented_operations_and_reads_documented_fields(schema, method, path,
                                                                    fields):
    operation = schema["paths"][path][method]
    ok = next(code for code in operation["responses"] if code.startswith("2"))
    body = operation["responses"][ok].get("content", {}).get("application/json", {})
    assert fields <= _fields(schema, body.get("schema", {}))


def test_it_uploads_the_documented_parts(schema):
    body = schema["paths"]["/api/v1/experts/{id}/versions/"]["post"]["requestBody"]
    parts = _fields(schema, body["content"]["multipart/form-data"]["schema"])
    assert {"manifest", "weights"} <= parts
    query = schema["paths"]["/api/v1/experts/{id}/versions/{number}/download/"]["get"]
    files = next(p for p in query["parameters"] if p["name"] == "file")["schema"]["enum"]
    assert {"manifest", "weights"} <= set(files)
    experts = schema["paths"]["/api/v1/experts/"]["get"]["parameters"]
    assert {"owner", "q", "page"} <= {p["name"] for p in experts}
