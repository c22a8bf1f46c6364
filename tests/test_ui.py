"""`zoo ui` in a real headless browser: Debian's chromium driven through chromium-driver.

The derivative's version page in the MLflow UI must show the lineage: a link to the
parent's version page, and the licence.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from registry_backends import missing_service, start_on_free_port

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


def _tiny_model() -> Any:
    import torch
    from torch import nn

    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2)
    )


def _register_chain(name: str) -> None:
    import torch

    from zoo import registry

    common: dict[str, Any] = {
        "strategy": "linear-probe",
        "strategy_settings": {"epochs": 1},
        "dataset": {"digest": "sha256:" + "ab" * 32, "classes": ["a", "b"]},
        "metrics": {"val_accuracy": 0.5},
        "input_example": torch.zeros(2, 3, 16, 16),
        "preprocessing": {"input_size": [3, 16, 16]},
        "class_names": ["a", "b"],
    }
    v1 = registry.register_derivative(
        _tiny_model(),
        name=name,
        parent="local:tiny-base",
        parent_sha256="cd" * 32,
        parent_license="cc-by-nc-4.0",
        **common,
    )
    registry.register_derivative(_tiny_model(), name=name, parent=v1.model_uri, **common)


@pytest.fixture
def browser(tmp_path: Path) -> Any:
    if not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)):
        missing_service("chromium and chromium-driver are not installed")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def ui(tmp_path: Path) -> Any:
    """`zoo ui` on a free loopback port, as a user starts it."""
    zoo_exe = shutil.which("zoo", path=str(Path(sys.executable).parent)) or "zoo"
    log = tmp_path / "zoo-ui.log"

    def start(port: int) -> subprocess.Popen[Any]:
        return subprocess.Popen(
            [zoo_exe, "ui", "--port", str(port)],
            stdout=open(log, "w"),  # closed with the process
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    # a port taken between its choice and zoo's bind: a fresh one (start_on_free_port)
    proc, port = start_on_free_port(start, lambda p: f"http://127.0.0.1:{p}/health", log, 180)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)


def _settled(driver: Any, timeout: float, read: Any) -> Any:
    """``read(driver)``'s first true value, read again while the page is still rendering:
    an element the UI replaced between finding and reading it (stale, under load), not
    there yet, or covered, is looked for again until ``timeout`` seconds."""
    from selenium.common.exceptions import (
        ElementClickInterceptedException,
        ElementNotInteractableException,
        NoSuchElementException,
        StaleElementReferenceException,
    )
    from selenium.webdriver.support.ui import WebDriverWait

    rendering = (
        StaleElementReferenceException,
        NoSuchElementException,
        ElementNotInteractableException,
        ElementClickInterceptedException,
    )
    return WebDriverWait(driver, timeout, ignored_exceptions=rendering).until(read)


@pytest.mark.browser
def test_version_page_shows_parent_link_and_licence(ui: str, browser: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    name = "ui-pets"
    # the UI serves the store the test registers into (same ZOO_HOME)
    _register_chain(name)
    from selenium.common.exceptions import TimeoutException

    browser.set_page_load_timeout(180)
    browser.get(f"{ui}/#/models/{name}/versions/2")
    link = (By.XPATH, f"//a[contains(@href, '#/models/{name}/versions/1')]")
    try:  # the UI's bundle is large: on a loaded 2-core machine the first render is slow
        text, href = _settled(
            browser,
            150,
            lambda d: (lambda a: (a.text, a.get_attribute("href")))(d.find_element(*link)),
        )
    except TimeoutException:
        body = browser.find_element(By.TAG_NAME, "body").text
        pytest.fail(f"no link to version 1 on {browser.current_url}; page text: {body[:1500]}")
    assert f"models:/{name}/1" in text
    WebDriverWait(browser, 30).until(
        lambda d: "cc-by-nc-4.0" in d.find_element(By.TAG_NAME, "body").text
    )
    body = browser.find_element(By.TAG_NAME, "body").text
    assert "Base model" in body and "local:tiny-base" in body
    # the link leads to the parent's own page (the UI opens description links in a new
    # tab, so follow its href): version 1, whose parent is the base
    browser.get(href)
    WebDriverWait(browser, 120).until(
        lambda d: (
            "Parent" in d.find_element(By.TAG_NAME, "body").text
            and not d.find_elements(By.XPATH, f"//a[contains(@href, '#/models/{name}/versions/1')]")
        )
    )
    assert browser.current_url.endswith(f"#/models/{name}/versions/1")
    assert "local:tiny-base" in browser.find_element(By.TAG_NAME, "body").text
