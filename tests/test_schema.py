"""The OpenAPI schema generates without warnings, validates, lists both APIs, and the docs need no CDN."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from rest_framework.test import APIClient

from conversions.engine import MP3, TAG_MAX_LENGTH

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def schema(tmp_path_factory) -> dict:
    target = tmp_path_factory.mktemp("schema") / "schema.yml"
    result = subprocess.run(
        [sys.executable, "manage.py", "spectacular", "--fail-on-warn", "--validate", "--file", str(target)],
        cwd=ROOT, env={**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"},
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Warning" not in result.stderr and "Error" not in result.stderr, result.stderr
    return yaml.safe_load(target.read_text())


def test_schema_lists_the_native_and_classic_apis(schema):
    paths = schema["paths"]
    for path in ("/api/conversions/", "/api/conversions/{conversion_id}/", "/api/conversions/{conversion_id}/download/",
                 "/api/auth/register/", "/api/auth/token/", "/login", "/upload", "/download"):
        assert path in paths, path
    assert set(paths["/api/conversions/"]) >= {"get", "post"}
    assert "post" in paths["/login"] and "post" in paths["/upload"] and "get" in paths["/download"]


def test_schema_and_docs_are_served_without_a_cdn():
    client = APIClient()
    schema = client.get("/api/schema/")
    assert schema.status_code == 200
    assert b"/api/conversions/" in schema.content
    docs = client.get("/api/docs/")
    assert docs.status_code == 200
    html = docs.content.decode()
    assert "drf_spectacular_sidecar/swagger-ui-dist/" in html
    assert "cdn.jsdelivr" not in html and "unpkg" not in html


def test_the_option_fields_state_what_the_format_table_allows(schema):
    components = schema["components"]["schemas"]
    fields = components["ConversionCreateInputRequest"]["properties"]

    def allowed(name: str) -> dict:
        field = fields[name]
        return components[field["allOf"][0]["$ref"].rsplit("/", 1)[1]] if "allOf" in field else field

    assert allowed("bitrate_kbps")["enum"] == list(MP3.bitrates_kbps)
    assert allowed("sample_rate")["enum"] == list(MP3.sample_rates)
    assert allowed("channels")["enum"] == [1, 2]
    assert (allowed("vbr_quality")["minimum"], allowed("vbr_quality")["maximum"]) == (0, 9)
    assert allowed("trim_start")["minimum"] == 0 and allowed("audio_track")["minimum"] == 0
    assert allowed("title")["maxLength"] == TAG_MAX_LENGTH
