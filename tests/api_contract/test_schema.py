"""The OpenAPI schema: valid, warning-free, and every operation documents its errors."""
from __future__ import annotations

import json

from django.core.management import call_command

from moecollab_site.api import ERROR_TEXT


def test_it_generates_a_valid_schema_without_warnings(tmp_path):
    out = tmp_path / "schema.json"
    call_command("spectacular", "--validate", "--fail-on-warn", "--format", "openapi-json",
                 "--file", str(out))
    schema = json.loads(out.read_text())
    error_ref = "#/components/schemas/Error"
    operations = [(method, path, op) for path, ops in schema["paths"].items()
                  for method, op in ops.items()]
    assert len(operations) >= 35
    for method, path, op in operations:
        errors = {code for code in op["responses"] if code.startswith(("4", "5"))}
        assert errors, f"{method.upper()} {path} documents no error"
        assert errors <= {str(c) for c in ERROR_TEXT}
        for code in errors:
            body = op["responses"][code]["content"]["application/json"]["schema"]
            assert body == {"$ref": error_ref}, f"{method.upper()} {path} {code}"
        if path.startswith("/api/v1/") and "{" in path:
            assert "404" in errors, f"{method.upper()} {path} has no 404"
        if method != "get" and path not in ("/api/v1/predict/", "/api/v1/auth/token/"):
            assert op["security"] and {} not in op["security"], f"{method} {path} is open"
    # Getting a token needs no token (no security requirement at all).
    assert "security" not in schema["paths"]["/api/v1/auth/token/"]["post"]


def test_it_answers_unknown_api_paths_with_the_json_error_shape(client):
    response = client.get("/api/v1/gating/not-a-number/promote/")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    page = client.get("/no-such-page/")
    assert page.status_code == 404 and page["Content-Type"].startswith("text/html")
