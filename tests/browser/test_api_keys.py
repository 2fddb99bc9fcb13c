"""API keys on the account page in a real browser: make one, copy it with the button, use it, revoke it.

Only the live server is needed (no workers): nothing here converts.
"""

import json
import re
import urllib.error
import urllib.request

from playwright.sync_api import expect

from accounts.models import ApiKey
from tests.browser.conftest import DESKTOP
from tests.browser.helpers import assert_accessible, force_sign_in
from tests.factories import UserFactory


def api_get(live_url: str, path: str, key: str) -> tuple[int, dict]:
    """GET a JSON endpoint of the live server with the key, as a script would."""
    request = urllib.request.Request(f"{live_url}{path}", headers={"Authorization": f"Bearer {key}"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_a_key_is_made_copied_used_and_revoked_on_the_account_page(live_server, new_page):
    # The loopback address is a secure context, so the page copies through the Clipboard API, which these allow.
    page = new_page("page", permissions=["clipboard-read", "clipboard-write"], **DESKTOP)
    user = UserFactory()
    force_sign_in(page.context, live_server.url, user)
    page.goto(f"{live_server.url}/account/")
    expect(page.get_by_text("You have no API keys.")).to_be_visible()

    page.get_by_label("Name").fill("laptop script")
    page.get_by_role("button", name="Make a key").click()
    shown = page.get_by_label(re.compile(r"^Your new key “laptop script”"))
    expect(shown).to_have_value(re.compile(r"^mp3k_"))
    key = shown.input_value()
    page.get_by_role("button", name="Copy").click()
    expect(page.locator("#new-key-copied")).to_have_text("Copied.")
    assert page.evaluate("navigator.clipboard.readText()") == key
    assert_accessible(page)

    status, me = api_get(live_server.url, "/api/auth/me/", key)
    assert status == 200 and me["email"] == user.email

    page.goto(f"{live_server.url}/account/")  # shown once: not on the page any more, only its prefix
    [api_key] = ApiKey.objects.filter(user=user)
    expect(page.get_by_role("cell", name=f"{api_key.prefix}…")).to_be_visible()
    assert key not in page.content()

    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Revoke laptop script").click()
    expect(page.get_by_text("The key “laptop script” is revoked")).to_be_visible()
    expect(page.get_by_text("You have no API keys.")).to_be_visible()
    status, body = api_get(live_server.url, "/api/auth/me/", key)
    assert status == 401 and body["code"] == "api_key_revoked"


def test_declining_the_confirmation_keeps_the_key(live_server, page):
    user = UserFactory()
    force_sign_in(page.context, live_server.url, user)
    page.goto(f"{live_server.url}/account/")
    page.get_by_label("Name").fill("keep me")
    page.get_by_role("button", name="Make a key").click()
    key = page.get_by_label(re.compile(r"^Your new key")).input_value()
    page.once("dialog", lambda dialog: dialog.dismiss())
    page.get_by_role("button", name="Revoke keep me").click()
    expect(page.get_by_label(re.compile(r"^Your new key"))).to_have_value(key)  # still the same page, not reloaded
    assert api_get(live_server.url, "/api/auth/me/", key)[0] == 200
