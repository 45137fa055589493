"""A citizen who presses "back to service provider" at TARA, in a real headless
Chromium: they land on the login's failure page, not on JSON (decision 0015,
2026-11-28). Chromium and chromedriver are the Debian packages ``.ci/run`` installs:
missing, the test skips by hand and fails in CI."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dashboard_harness import chromium, console_errors
from login_harness import running_stack

__all__ = ["chromium"]  # the fixture, used by name


def test_a_cancelled_login_shows_the_page(tmp_path: Path, chromium: Any) -> None:
    """Cancel on the mock's login page: the browser shows the page (both languages, the
    error code, a link that starts again) under its strict CSP, no script, no console
    error but its status (a CSP refusal would be one)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    with running_stack(tmp_path) as stack:
        chromium.get(stack.service + "/auth/login?return_to=/")
        assert "/oidc/authorize" in chromium.current_url
        chromium.find_element(By.CSS_SELECTOR, 'button[name="action"][value="cancel"]').click()
        WebDriverWait(chromium, 30).until(
            lambda d: (
                d.current_url.startswith(stack.service + "/auth/callback")
                and d.execute_script("return document.readyState") == "complete"
            )
        )
        assert chromium.title == "Sisselogimine ebaõnnestus / Login failed"
        assert chromium.find_element(By.TAG_NAME, "html").get_attribute("lang") == "et"
        assert chromium.find_element(By.ID, "why").text == "Katkestasite sisselogimise."
        assert chromium.find_element(By.ID, "why-en").text == "You cancelled the login."
        assert chromium.find_element(By.ID, "error-code").text == "user_cancel"
        assert chromium.find_elements(By.TAG_NAME, "script") == []
        assert "error_description" not in chromium.page_source
        # Chromium reports the page's own status (400) as a network error; nothing else
        assert console_errors(chromium, allowed=("responded with a status of 400",)) == []
        again = chromium.find_element(By.ID, "again")
        assert again.get_attribute("href") == stack.service + "/auth/login"
        again.click()  # and starting again works: back at TARA's login page
        WebDriverWait(chromium, 30).until(lambda d: "/oidc/authorize" in d.current_url)
