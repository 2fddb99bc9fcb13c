"""`make screenshots`: every page of `PAGES` on a desktop and on a phone, saved as docs/screenshots/<name>-desktop.png
and <name>-phone.png, from the live server with real workers behind it.

Run through pytest (`pytest -m screenshots tests/browser/screenshots.py`), so it uses the browser tests' fixtures; its
file name and the `screenshots` marker keep it out of the suite. A page that does not exist yet (404, or a redirect
elsewhere) is skipped with that reason; a page that logs a console error fails, as in a test.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple
from urllib.parse import urlsplit

import pytest

from accounts.services import api_key_create
from tests.browser.conftest import DESKTOP, PHONE, ROOT
from tests.browser.helpers import expect_browser_error, force_sign_in
from tests.conversions.api.helpers import upload, wait_finished
from tests.factories import UserFactory
from tests.fixtures.users import bearer_client

pytestmark = [pytest.mark.screenshots]
SCREENSHOTS_DIR = ROOT / "docs" / "screenshots"


@dataclass
class Scene:
    """What a page is shown with: the signed-in user (None: signed out) and the values for the path's `{fields}`."""

    user: object | None = None
    fields: dict = field(default_factory=dict)


def signed_out(app, media) -> Scene:
    return Scene()


def signed_in_with_conversions(app, media) -> Scene:
    """A signed-in person with two finished conversions, converted by the real workers."""
    user = UserFactory(email="sam@example.com")
    client = bearer_client(user)
    ids = []
    for spec, title in (("mp4_aac", "Holiday in Lisbon"), ("mkv_opus", "Band rehearsal")):
        response = upload(client, media(spec, duration=3.0), title=title)
        assert response.status_code == 202, response.content
        ids.append(response.json()["id"])
    for conversion_id in ids:
        assert wait_finished(client, conversion_id)["status"] == "done"
    return Scene(user=user, fields={"conversion": ids[0]})


def signed_in_with_conversions_and_a_key(app, media) -> Scene:
    """The same person with an API key, which the account page lists."""
    scene = signed_in_with_conversions(app, media)
    api_key_create(user=scene.user, name="Home server backup")
    return scene


class Shot(NamedTuple):
    name: str  # docs/screenshots/<name>-desktop.png and <name>-phone.png
    path: str  # may name the scene's fields: /conversions/{conversion}/
    setup: Callable[..., Scene] = signed_out


# Every page the screenshots show, in one place.
PAGES = [
    Shot("welcome", "/"),
    Shot("signup", "/account/signup/"),
    Shot("login", "/account/login/"),
    Shot("convert", "/", signed_in_with_conversions),
    Shot("conversions", "/conversions/", signed_in_with_conversions),
    Shot("conversion", "/conversions/{conversion}/", signed_in_with_conversions),
    Shot("account", "/account/", signed_in_with_conversions_and_a_key),
    Shot("api-docs", "/api/docs/"),
    Shot("admin-login", "/admin/login/"),
]


def _show(page, url: str, path: str) -> None:
    """Open the page; skip when it is not there yet."""
    response = page.goto(url)
    if response is not None and response.status == 404:
        expect_browser_error(page, r"status of 404")  # the browser logs the missing page; that is the point here
        pytest.skip(f"{path} answers 404: the page does not exist yet")
    if urlsplit(page.url).path != urlsplit(url).path:
        pytest.skip(f"{path} redirects to {urlsplit(page.url).path}: the page does not exist yet")
    assert response is not None and response.ok, f"{path} answered {response and response.status}"
    page.wait_for_load_state("networkidle")  # what the page fetches after loading (the API docs: the schema)


@pytest.mark.parametrize("shot", PAGES, ids=[shot.name for shot in PAGES])
def test_screenshot(shot, app, new_page, media, settings):
    # The account page shows the limits a new deployment has, not the suite's relaxed ones (tests/settings.py).
    settings.QUOTA_ACTIVE_JOBS, settings.QUOTA_UPLOADS_PER_HOUR, settings.QUOTA_STORAGE_MB = 3, 30, 10240
    scene = shot.setup(app, media)
    path = shot.path.format(**scene.fields)
    SCREENSHOTS_DIR.mkdir(parents=True, exist_ok=True)
    for device, options in (("desktop", DESKTOP), ("phone", PHONE)):
        page = new_page(device if device != "desktop" else "page", **options)
        if scene.user is not None:
            force_sign_in(page.context, app.url, scene.user)
        _show(page, f"{app.url}{path}", path)
        page.screenshot(path=SCREENSHOTS_DIR / f"{shot.name}-{device}.png", full_page=True)
