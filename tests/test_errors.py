"""The one error model holds together: every error the code base can raise is a ServiceError whose code is in
ErrorCode, no code is written as a bare string, every code is in the README's error tables, and the handlers answer
with what the error carries."""

import ast
import importlib
import pkgutil
import re
from pathlib import Path

import pytest
from django.db import OperationalError
from rest_framework.exceptions import ValidationError

from mp3converter.api import as_service_error, exception_handler
from mp3converter.errors import DatabaseUnavailable, ErrorCode, InvalidState, ServiceError, StorageUnavailable

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("accounts", "conversions", "mp3converter", "notifications")


def project_modules() -> list[str]:
    names = []
    for package in PACKAGES:
        names.append(package)
        for module in pkgutil.walk_packages([str(ROOT / package)], prefix=f"{package}."):
            if ".migrations" not in module.name and not module.name.startswith("mp3converter.settings"):
                names.append(module.name)
    return names


def service_errors() -> set[type[ServiceError]]:
    for name in project_modules():
        importlib.import_module(name)  # every subclass the code base defines is now known
    found, todo = set(), [ServiceError]
    while todo:
        cls = todo.pop()
        found.add(cls)
        todo.extend(cls.__subclasses__())
    return found


def readme_error_tables() -> list[list[dict[str, str]]]:
    """The tables under the README's "Errors" heading, as rows of {column: cell}."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n### Errors\n", 1)[1].split("\n## ", 1)[0].split("\n### ", 1)[0]
    tables, header = [], None
    for line in section.splitlines():
        if not line.startswith("|"):
            header = None
            continue
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if header is None:
            header = cells
            tables.append([])
        elif not set(line) <= set("|- "):
            tables[-1].append(dict(zip(header, cells, strict=True)))
    return tables


def codes_in(cell: str) -> set[str]:
    return set(re.findall(r"`([a-z_]+)`", cell))


def test_every_error_class_carries_a_code_of_the_enum_a_status_and_a_sentence():
    errors = service_errors()
    assert len(errors) > 15
    for cls in errors:
        assert isinstance(cls.code, ErrorCode), cls
        assert 400 <= cls.code.status < 600, cls
        assert cls.message.endswith(".") and len(cls.message) > 20, cls


def test_every_code_of_the_enum_is_raised_by_some_error_class():
    assert {cls.code for cls in service_errors()} == set(ErrorCode)


def test_the_readme_tables_list_exactly_the_codes_of_the_enum_with_their_status():
    answers, job_failures = readme_error_tables()
    listed = {code for row in answers + job_failures for code in codes_in(row["code"])}
    assert listed == {code.value for code in ErrorCode}
    for row in answers:
        for code in codes_in(row["code"]):
            assert int(row["status"]) == ErrorCode(code).status, code


def literal_codes(path: Path) -> list[str]:
    """`code=`/`error_code=` keywords and `code = ...` class attributes given as a non-empty string literal."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        values = []
        if isinstance(node, ast.keyword) and node.arg in ("code", "error_code"):
            values = [node.value]
        elif isinstance(node, ast.Assign) and any(getattr(target, "id", None) == "code" for target in node.targets):
            values = [node.value]
        for value in values:
            if isinstance(value, ast.Constant) and isinstance(value.value, str) and value.value:
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {value.value!r}")
    return found


def test_no_code_is_written_as_a_bare_string():
    sources = [path for package in PACKAGES for path in (ROOT / package).rglob("*.py") if "migrations" not in path.parts]
    assert [found for path in sources for found in literal_codes(path)] == []


# --- the native handler ------------------------------------------------------------------------------------------
def test_native_handler_answers_with_code_status_message_and_retry_after():
    response = exception_handler(StorageUnavailable(), {})
    assert response.status_code == 503
    assert response.data == {"code": "storage_unavailable", "detail": StorageUnavailable.message}
    assert response["Retry-After"] == "30"

    response = exception_handler(InvalidState("The MP3 is not ready: the conversion is queued."), {})
    assert (response.status_code, response.data["code"]) == (409, "invalid_state")
    assert not response.has_header("Retry-After")


def test_native_handler_answers_an_error_about_a_field_as_a_field_error():
    from conversions.engine import InvalidOption

    response = exception_handler(InvalidOption({"audio_track": ["This file has 1 audio track: choose 0 to 0."]}), {})
    assert (response.status_code, response.data) == (400, {"audio_track": ["This file has 1 audio track: choose 0 to 0."]})

    several = InvalidOption({"bitrate_kbps": ["bitrate_kbps must be one of 32, 64."], "channels": ["channels must be 1."]})
    assert exception_handler(several, {}).data == {
        "bitrate_kbps": ["bitrate_kbps must be one of 32, 64."], "channels": ["channels must be 1."]
    }


def test_a_database_outage_is_told_in_our_words_never_the_drivers():
    error = as_service_error(OperationalError(2003, "Can't connect to MySQL server on '10.0.0.5' (111)"))
    assert isinstance(error, DatabaseUnavailable)
    response = exception_handler(OperationalError(2003, "Can't connect to MySQL server on '10.0.0.5' (111)"), {})
    assert response.status_code == 503
    assert "10.0.0.5" not in str(response.data)


@pytest.mark.parametrize("exc", [ValidationError({"file": ["No file was submitted."]}), ValueError("a bug")])
def test_errors_that_are_not_ours_are_left_to_drf(exc):
    assert as_service_error(exc) is None
