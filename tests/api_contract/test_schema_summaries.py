"""The API docs: every operation has a one-line summary, and the docs page links to the site."""
from __future__ import annotations

import pytest
from drf_spectacular.generators import SchemaGenerator

METHODS = ("get", "post", "put", "patch", "delete")


@pytest.fixture(scope="module")
def schema(django_db_blocker):
    with django_db_blocker.unblock():
        return SchemaGenerator().get_schema(request=None, public=True)


def test_it_gives_every_operation_a_summary(schema):
    operations = [(method.upper(), path, op) for path, ops in schema["paths"].items()
                  for method, op in ops.items() if method in METHODS]
    assert len(operations) >= 35
    missing = [f"{method} {path}" for method, path, op in operations
               if not str(op.get("summary", "")).strip()]
    assert not missing, f"operations without a summary: {missing}"
    summaries = [op["summary"] for _, _, op in operations]
    assert len(set(summaries)) == len(summaries), "two operations share a summary"
    assert all(len(s) <= 60 and not s.endswith(".") for s in summaries)


def test_it_links_the_docs_back_to_the_site(schema, client):
    assert "](/)" in schema["info"]["description"]
    assert schema["externalDocs"]["url"] == "/"
    page = client.get("/api/docs/")
    assert page.status_code == 200
    assert page.content.count(b"api/schema") >= 1  # the page renders the schema above
