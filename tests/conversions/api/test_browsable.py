"""The browsable API as a person uses it: sign in on /api-auth/login/, upload through the form (CSRF checked), read
the pages by their names."""

import re
from html.parser import HTMLParser

import pytest
from django.test import Client

from accounts.views import (
    LogoutView,
    MeView,
    PasswordChangeView,
    RegisterView,
    ResendVerificationView,
    TokenRefreshView,
    TokenView,
    VerifyEmailView,
)
from conversions.api.native import (
    ConversionCancelView,
    ConversionDetailView,
    ConversionDownloadView,
    ConversionListCreateView,
    ConversionRetryView,
    ConversionZipView,
)
from conversions.api.serializers import ConversionCreateInputSerializer
from conversions.engine import OutputOptions
from tests.conversions.api.helpers import job_url
from tests.factories import PASSWORD, ConversionFactory, UserFactory
from tests.media import probe_output
from tests.utils import wait_for

HTML = {"HTTP_ACCEPT": "text/html"}


class Forms(HTMLParser):
    """Every <form> of a page: its attributes and its named fields (input, select, textarea) with their attributes."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.forms: list[dict] = []
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "form":
            self.forms.append({"attrs": attrs, "fields": {}})
        elif tag in ("input", "select", "textarea") and self.forms and attrs.get("name"):
            self.forms[-1]["fields"][attrs["name"]] = {"tag": tag, **attrs}

    def form(self, **wanted) -> dict:
        matching = [form for form in self.forms if all(form["attrs"].get(k) == v for k, v in wanted.items())]
        assert len(matching) == 1, (wanted, [form["attrs"] for form in self.forms])
        return matching[0]


def upload_form(html: str) -> dict:
    return Forms(html).form(action="/api/conversions/", method="POST", enctype="multipart/form-data")


def title(html: str) -> str:
    return re.search(r"<title>(.*?)</title>", html, re.S).group(1).strip()


def breadcrumbs(html: str) -> list[str]:
    trail = re.search(r'<ul class="breadcrumb">(.*?)</ul>', html, re.S).group(1)
    return re.findall(r"<a [^>]*>(.*?)</a>", trail)


def sign_in(client: Client, email: str, password: str = PASSWORD, next_url: str = "/api/conversions/"):
    """Through the page the browsable API's "Log in" link opens, with the token the page carries."""
    page = client.get("/api-auth/login/", {"next": next_url})
    assert page.status_code == 200
    form = Forms(page.content.decode()).form(action="/api-auth/login/")
    assert {"username", "password", "csrfmiddlewaretoken", "next"} <= set(form["fields"])
    return client.post("/api-auth/login/", {
        "username": email, "password": password, "next": form["fields"]["next"]["value"],
        "csrfmiddlewaretoken": form["fields"]["csrfmiddlewaretoken"]["value"],
    })


# --- the upload form ---------------------------------------------------------------------------------------------
@pytest.mark.django_db
def test_the_upload_form_has_the_file_and_every_option(client, user):
    client.force_login(user)
    page = client.get("/api/conversions/", **HTML)
    assert page.status_code == 200
    html = page.content.decode()
    fields = upload_form(html)["fields"]
    assert fields["file"]["tag"] == "input" and fields["file"]["type"] == "file"
    assert re.search(r'<input (?=[^>]*type="file")(?=[^>]*name="file")', html)
    options = set(ConversionCreateInputSerializer().fields) - {"file", "source_url"}
    # Every option the engine knows, the presets, and the job's own webhook.
    assert options == {*OutputOptions.names(), "preset", "webhook_url"}
    for name in options:
        assert fields[name]["tag"] in ("input", "select"), name
    assert fields["normalize"]["type"] == fields["cover"]["type"] == "checkbox"
    assert "csrfmiddlewaretoken" in fields
    assert list(fields)[1] == "file"  # first, after the CSRF token


def test_the_login_redirect_without_next_is_the_conversions_page(user):
    browser = Client()
    signed_in = browser.post("/api-auth/login/", {"username": user.email, "password": PASSWORD})
    assert signed_in.status_code == 302 and signed_in["Location"] == "/api/conversions/"


@pytest.mark.e2e
def test_sign_in_on_the_login_page_and_upload_through_the_form(live_workers, user, media, tmp_path):
    browser = Client(enforce_csrf_checks=True)
    anonymous = browser.get("/api/conversions/", **HTML)
    assert anonymous.status_code == 401
    login_link = re.search(r"<a href=['\"]([^'\"]*)['\"]>Log in</a>", anonymous.content.decode())
    assert login_link and login_link.group(1) == "/api-auth/login/?next=/api/conversions/"

    signed_in = sign_in(browser, user.email)
    assert signed_in.status_code == 302 and signed_in["Location"] == "/api/conversions/"
    page = browser.get("/api/conversions/", **HTML)
    assert page.status_code == 200 and "Log out" in page.content.decode()
    form = upload_form(page.content.decode())

    with open(media("mp4_aac"), "rb") as video:
        fields = {
            "file": video, "bitrate_kbps": "128", "channels": "1", "title": "From the form",
            "csrfmiddlewaretoken": form["fields"]["csrfmiddlewaretoken"]["value"],
        }
        # The form's blank fields are sent too, as a browser sends them: they mean "the default".
        fields |= {name: "" for name, field in form["fields"].items()
                   if name not in fields and field.get("type") not in ("checkbox", "hidden", "file")}
        answer = browser.post("/api/conversions/", fields, **HTML)
    assert answer.status_code == 202, answer.content.decode()[-2000:]
    job = wait_for(lambda: browser.get("/api/conversions/", HTTP_ACCEPT="application/json").json()["results"],
                   timeout=10, message="the job in the list")[0]
    assert job["options"] == {"bitrate_kbps": 128, "channels": 1, "title": "From the form"}

    def finished():
        body = browser.get(job_url(job["id"]), HTTP_ACCEPT="application/json").json()
        return body if body["status"] in ("done", "failed") else None

    assert wait_for(finished, timeout=90, message="the conversion to finish")["status"] == "done"
    download = browser.get(job_url(job["id"], "download"))
    assert download.status_code == 200
    mp3 = tmp_path / "out.mp3"
    mp3.write_bytes(b"".join(download.streaming_content))
    audio = probe_output(mp3)["audio"][0]
    assert (audio["codec"], audio["bitrate_kbps"], audio["channels"]) == ("mp3", 128, 1)


@pytest.mark.django_db
def test_the_form_needs_its_csrf_token(user, media):
    browser = Client(enforce_csrf_checks=True)
    assert sign_in(browser, user.email).status_code == 302
    with open(media("mp4_aac"), "rb") as video:
        refused = browser.post("/api/conversions/", {"file": video}, HTTP_ACCEPT="application/json")
    assert refused.status_code == 403
    assert "CSRF" in refused.json()["detail"]
    assert user.conversions.count() == 0


@pytest.mark.django_db
def test_a_wrong_password_on_the_login_page_signs_nobody_in(user):
    browser = Client(enforce_csrf_checks=True)
    page = sign_in(browser, user.email, password="not the password")
    assert page.status_code == 200  # the form again, with its error
    assert browser.get("/api/conversions/", HTTP_ACCEPT="application/json").status_code == 401


@pytest.mark.django_db
def test_an_unconfirmed_address_cannot_upload_through_the_form(media):
    unconfirmed = UserFactory(email_verified=False)
    browser = Client(enforce_csrf_checks=True)
    assert sign_in(browser, unconfirmed.email).status_code == 302
    form = upload_form(browser.get("/api/conversions/", **HTML).content.decode())
    with open(media("mp4_aac"), "rb") as video:
        refused = browser.post("/api/conversions/", {
            "file": video, "csrfmiddlewaretoken": form["fields"]["csrfmiddlewaretoken"]["value"],
        }, HTTP_ACCEPT="application/json")
    assert refused.status_code == 403
    assert refused.json()["code"] == "email_not_verified"
    assert unconfirmed.conversions.count() == 0


# --- the pages' names ---------------------------------------------------------------------------------------------
@pytest.mark.django_db
def test_the_conversion_pages_are_named_for_people(client, user):
    client.force_login(user)
    job = ConversionFactory(owner=user)
    pages = {
        "/api/conversions/": ("Conversions", ["Conversions"]),
        job_url(job.id): ("Conversion", ["Conversions", "Conversion"]),
        job_url(job.id, "cancel"): ("Cancel", ["Conversions", "Conversion", "Cancel"]),  # GET: 405, still a page
        job_url(job.id, "retry"): ("Retry", ["Conversions", "Conversion", "Retry"]),
    }
    for url, (name, trail) in pages.items():
        html = client.get(url, **HTML).content.decode()
        assert title(html) == f"{name} – Django REST framework", url
        assert breadcrumbs(html) == trail, url
    # The download and the ZIP answer files, never a page; their names show in OPTIONS.
    for url, name in ((job_url(job.id, "download"), "Download"), ("/api/conversions/zip/", "ZIP")):
        assert client.options(url).json()["name"] == name


@pytest.mark.django_db
def test_the_account_pages_are_named_for_people(client, user):
    client.force_login(user)
    pages = {
        "/api/auth/register/": ("Register", ["Register"]),
        "/api/auth/token/": ("Token", ["Token"]),
        "/api/auth/token/refresh/": ("Refresh token", ["Token", "Refresh token"]),
        "/api/auth/logout/": ("Log out", ["Log out"]),
        "/api/auth/password/": ("Password", ["Password"]),
        "/api/auth/me/": ("Me", ["Me"]),
        "/api/auth/verify/resend/": ("Resend the confirmation link", ["Resend the confirmation link"]),
    }
    for url, (name, trail) in pages.items():
        html = client.get(url, **HTML).content.decode()
        assert title(html) == f"{name} – Django REST framework", url
        assert breadcrumbs(html)[-len(trail):] == trail, url


def test_every_view_has_a_name_of_its_own():
    names = {
        ConversionListCreateView: "Conversions", ConversionDetailView: "Conversion", ConversionDownloadView: "Download",
        ConversionCancelView: "Cancel", ConversionRetryView: "Retry", ConversionZipView: "ZIP",
        RegisterView: "Register", VerifyEmailView: "Confirm email address",
        ResendVerificationView: "Resend the confirmation link", TokenView: "Token", TokenRefreshView: "Refresh token",
        LogoutView: "Log out", PasswordChangeView: "Password", MeView: "Me",
    }
    for view, name in names.items():
        assert view().get_view_name() == name, view
