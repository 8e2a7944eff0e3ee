"""Headless Chromium for UI tests: Debian's chromium and chromium-driver, never a download."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--no-first-run",
    "--window-size=1400,1000",
)


@contextmanager
def chromium(profile_dir: Path) -> Iterator:
    """A Selenium driver for /usr/bin/chromium with a fresh profile folder."""
    browser, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    if not browser or not driver_path:
        pytest.fail(
            "chromium or chromedriver is missing: run scripts/system-deps.sh "
            "(apt-get install chromium chromium-driver)"
        )
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile_dir}")
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    try:
        yield driver
    finally:
        driver.quit()


OUTPUT = Path(__file__).parent / "out"
"""Where UI tests keep their screenshots (git-ignored): kept after the run, for a person to see."""


def wait_until(driver, condition, what: str, timeout: float = 60):
    """``condition(driver)``'s first truthy value, polled by Selenium; fail naming ``what``."""
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.25).until(
        condition, message=f"{what} (waited {timeout:.0f} s)"
    )


def wait_for_text(driver, text: str, timeout: float = 60) -> None:
    """Wait until the page's text holds ``text``."""
    wait_until(
        driver,
        lambda d: text in d.find_element("tag name", "body").text,
        f"the page never showed {text!r}",
        timeout,
    )


def screenshot(driver, name: str) -> Path:
    """The whole page as ``OUTPUT/<name>.png`` (the window grown to the page's height for the
    shot), its path printed so the test's output says where it is."""
    OUTPUT.mkdir(parents=True, exist_ok=True)
    path = OUTPUT / f"{name}.png"
    size = driver.get_window_size()
    width, height = size["width"], size["height"]
    # The UI scrolls inside its own panes: the tallest of them is the page's height.
    tall = driver.execute_script(
        "return Math.max(...[...document.querySelectorAll('*')].map(e => e.scrollHeight))"
    )
    driver.set_window_size(width, min(max(height, tall), 8000))
    try:
        driver.save_screenshot(str(path))
    finally:
        driver.set_window_size(width, height)
    print(f"screenshot: {path}")
    return path


@contextmanager
def shot_on_failure(driver, name: str) -> Iterator[None]:
    """Keep a screenshot of the page as ``<name>-failed.png`` when the body raises."""
    try:
        yield
    except BaseException:
        screenshot(driver, f"{name}-failed")
        raise
