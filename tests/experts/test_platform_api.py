"""GET /api/v1/platform/: what an upload is checked against, for the command line's inspect."""
from __future__ import annotations

from experts.ml.upload_checks import MAX_MANIFEST_BYTES
from experts.uploads import platform_backbone


def test_it_tells_anyone_the_backbone_and_the_caps(client, settings):
    settings.MOECOLLAB_UPLOAD_MAX_BYTES = 12345
    response = client.get("/api/v1/platform/")
    assert response.status_code == 200
    assert response.json() == {"backbone": platform_backbone(), "upload_max_bytes": 12345,
                               "manifest_max_bytes": MAX_MANIFEST_BYTES}


def test_it_refuses_a_wrong_token(client, db):
    response = client.get("/api/v1/platform/", HTTP_AUTHORIZATION="Token not-a-token")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "authentication_failed"
