"""Debian's chromium, headless, driven through its chromium-driver by Selenium: what a person
sees in the MLflow UI and the report. Nothing is downloaded: both binaries come from apt
(.ci/run installs them), and Selenium is given their paths, so its manager never runs."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
# Screenshots the browser test writes, for a person to look at after CI
ARTIFACTS = Path(os.environ.get("DLREPRO_TEST_ARTIFACTS", REPO / "test-artifacts")) / "browser"
PAGE_TIMEOUT_S = 90  # the MLflow UI's first load on a busy 2-core machine


def binaries() -> tuple[str, str] | None:
    """(chromium, chromedriver) when both are installed."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


@contextlib.contextmanager
def chromium() -> Iterator[Any]:
    """A headless chromium session (selenium's webdriver), closed afterwards."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    found = binaries()
    assert found, "chromium and chromium-driver are not installed"
    options = webdriver.ChromeOptions()
    options.binary_location = found[0]
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(argument)
    options.add_argument("--window-size=1600,1000")
    driver = webdriver.Chrome(options=options, service=Service(executable_path=found[1]))
    try:
        yield driver
    finally:
        driver.quit()


def page_text(driver: Any) -> str:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.TAG_NAME, "body").text


def shows(driver: Any, url: str, *texts: str, screenshot: str) -> str:
    """Open `url`, wait until the page shows every one of `texts`, save a screenshot under
    ARTIFACTS as `screenshot`.png, and return the page's visible text. On a timeout the
    screenshot is saved too and the assertion names what was missing."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    driver.get(url)
    try:
        WebDriverWait(driver, PAGE_TIMEOUT_S).until(
            lambda d: all(text in page_text(d) for text in texts)
        )
    except TimeoutException:
        driver.save_screenshot(str(ARTIFACTS / f"{screenshot}.png"))
        shown = page_text(driver)
        missing = [text for text in texts if text not in shown]
        raise AssertionError(
            f"{url}: {missing} not shown; the page shows:\n{shown[:3000]}"
        ) from None
    driver.save_screenshot(str(ARTIFACTS / f"{screenshot}.png"))
    return page_text(driver)
