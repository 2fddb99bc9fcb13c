"""What the API tests (and the fault and security tests) do through the API: upload, follow, download."""

import base64

from tests.factories import PASSWORD
from tests.utils import wait_for


def upload(client, path, **fields):
    with open(path, "rb") as source:
        return client.post("/api/conversions/", {"file": source, **fields}, format="multipart")


def wait_finished(client, conversion_id, timeout=90):
    def finished():
        body = client.get(f"/api/conversions/{conversion_id}/").json()
        return body if body["status"] in ("done", "failed") else None

    return wait_for(finished, timeout=timeout, message=f"conversion {conversion_id} to finish")


def convert_all(client, paths, **fields) -> list[str]:
    """Upload each file, then wait until every one is done; their ids, in order."""
    ids = []
    for path in paths:
        response = upload(client, path, **fields)
        assert response.status_code == 202, response.content
        ids.append(response.json()["id"])
    for conversion_id in ids:
        assert wait_finished(client, conversion_id)["status"] == "done"
    return ids


def mp3_bytes(response) -> bytes:
    return b"".join(response.streaming_content)


def job_url(job_id, action: str = "") -> str:
    return f"/api/conversions/{job_id}/" + (f"{action}/" if action else "")


def classic_token(client, user) -> str:
    """The raw JWT from the classic POST /login (HTTP Basic)."""
    credentials = base64.b64encode(f"{user.email}:{PASSWORD}".encode()).decode()
    login = client.post("/login", HTTP_AUTHORIZATION=f"Basic {credentials}")
    assert login.status_code == 200, login.content
    return login.content.decode()


def wait_running(client, job_id) -> dict:
    def running():
        body = client.get(job_url(job_id)).json()
        assert body["status"] in ("queued", "processing"), body  # finished before it could be watched running
        return body if body["status"] == "processing" and body["progress"] > 0 else None

    return wait_for(running, timeout=60, message="the conversion to run and report progress")
