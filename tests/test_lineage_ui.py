"""The whole tree in the MLflow UI (issue 25), in a real headless chromium: the parent's
version page lists its children with links, and the grandchild's ``lineage.svg``
artifact is listed and renders (pixels, not just a file).

``ZOO_DOCS_SCREENSHOTS=DIR`` also saves the two screenshots docs/registry.md shows
(``lineage-version-page.png``, ``lineage-svg.png``):

    ZOO_DOCS_SCREENSHOTS=docs/images python -m pytest -q -n 0 tests/test_lineage_ui.py
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import pytest
from test_ui import _settled, _tiny_model, browser, ui  # noqa: F401 (fixtures)

NAME = "ui-tree"


def _register_chain() -> list[Any]:
    import torch

    from zoo import registry

    common: dict[str, Any] = {
        "strategy": "linear-probe",
        "strategy_settings": {"epochs": 1},
        "dataset": {"digest": "sha256:" + "ab" * 32, "classes": ["a", "b"]},
        "metrics": {"val_accuracy": 0.5, "test_accuracy": 0.75},
        "input_example": torch.zeros(2, 3, 16, 16),
        "preprocessing": {"input_size": [3, 16, 16]},
        "class_names": ["a", "b"],
    }
    v1 = registry.register_derivative(
        _tiny_model(),
        name=NAME,
        parent="local:tiny-base",
        parent_sha256="cd" * 32,
        parent_license="cc-by-nc-4.0",
        **common,
    )
    v2 = registry.register_derivative(_tiny_model(), name=NAME, parent=v1.model_uri, **common)
    v3 = registry.register_derivative(_tiny_model(), name=NAME, parent=v2.model_uri, **common)
    return [v1, v2, v3]


def _wait_body(driver: Any, what: str, timeout: float) -> None:
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        WebDriverWait(driver, timeout).until(
            lambda d: what in d.find_element(By.TAG_NAME, "body").text
        )
    except TimeoutException:
        body = driver.find_element(By.TAG_NAME, "body").text
        pytest.fail(f"'{what}' not on {driver.current_url}; page text: {body[:1500]}")


def _save(driver: Any, name: str) -> None:
    folder = os.environ.get("ZOO_DOCS_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(Path(folder) / name))


def _drawn_pixels(png: bytes, box: dict[str, float]) -> tuple[int, int]:
    """In the screenshot's ``box``: pixels that are not background, distinct colours."""
    import numpy as np
    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("RGB")
    left, top = int(box["x"]), int(box["y"])
    crop = np.asarray(image.crop((left, top, left + int(box["width"]), top + int(box["height"]))))
    drawn = int((crop.min(axis=2) < 235).sum())
    return drawn, len(np.unique(crop.reshape(-1, 3), axis=0))


@pytest.mark.browser
def test_parent_page_lists_children_and_grandchild_svg_renders(
    ui: str,  # noqa: F811 (test_ui's fixture)
    browser: Any,  # noqa: F811 (test_ui's fixture)
) -> None:
    from selenium.webdriver.common.by import By

    v1, v2, v3 = _register_chain()
    browser.set_window_size(1400, 1000)
    browser.set_page_load_timeout(180)
    for parent, child in ((v1, v2), (v2, v3)):
        browser.get(f"{ui}/#/models/{NAME}/versions/{parent.version}")
        _wait_body(browser, "Derived from this version", 150)
        to_child = f"//a[contains(@href, '#/models/{NAME}/versions/{child.version}')]"
        text = _settled(browser, 60, lambda d, xpath=to_child: d.find_element(By.XPATH, xpath).text)
        assert child.model_uri in text
        if parent is v1:
            _save(browser, "lineage-version-page.png")

    # the grandchild's artifacts: its logged model's page (MLflow 3)
    from zoo.registry import get_version

    model_id = get_version(v3.model_uri).tags["zoo.model_id"]
    from mlflow import MlflowClient

    experiment = MlflowClient().get_logged_model(model_id).experiment_id
    browser.get(f"{ui}/#/experiments/{experiment}/models/{model_id}/artifacts")
    entry = "//*[normalize-space(text())='lineage.svg']"
    _settled(browser, 150, lambda d: d.find_element(By.XPATH, entry).click() or True)

    def preview(d: Any) -> Any:
        """The artifact's preview (not an icon of the page) scrolled into view: its box."""
        for img in d.find_elements(By.TAG_NAME, "img"):
            box = d.execute_script(
                "const i = arguments[0];"
                "if (!(i.complete && i.naturalWidth > 100"
                " && i.getBoundingClientRect().width > 100)) return null;"
                "i.scrollIntoView();"
                "const r = i.getBoundingClientRect();"
                "return {x: r.x, y: r.y, width: r.width, height: r.height};",
                img,
            )
            if box:
                return box
        return False

    box = _settled(browser, 60, preview)
    assert box["width"] > 50 and box["height"] > 50, box
    png = browser.get_screenshot_as_png()
    drawn, colours = _drawn_pixels(png, box)
    # boxes, arrows and text: a blank or broken image has (almost) no drawn pixels
    assert drawn > 0.02 * box["width"] * box["height"], (drawn, box)
    assert colours > 20, colours
    _save(browser, "lineage-svg.png")
