"""Headless Chromium for the report tests (Debian's chromium and chromium-driver, driven by
selenium): a page opened from a file:// URL with the network off, its DOM after the scripts ran,
a screenshot of each chart."""

from __future__ import annotations

import io
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import av
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

INSTALL = "apt-get install -y chromium chromium-driver (the README's test command does it)"
RENDER_TIMEOUT_S = 60
MARKS = """
const found = {};
for (const chart of document.querySelectorAll('div.chart')) {
  found[chart.dataset.chart] = [...chart.querySelectorAll(
    '[aria-roledescription="bar"], [aria-roledescription="point"], [aria-roledescription="circle"]'
  )].map(mark => mark.getAttribute('aria-label') || '');
}
return found;
"""


@dataclass(frozen=True)
class Page:
    dom: str  # document.documentElement.outerHTML once every chart has rendered
    charts_rendered: int
    chart_pixels: dict[str, tuple[int, int, int]]  # chart name: (width, height, inked pixels)
    resources: list[str]  # every URL the page fetched (performance entries)
    marks: dict[str, list[dict[str, str]]]  # chart name: its bars/points, as their aria-labels say

    def figure(self, metric: str) -> str:
        """The text a figure (``data-metric``) shows."""
        start = self.dom.index(f'data-metric="{metric}">') + len(f'data-metric="{metric}">')
        return self.dom[start : self.dom.index("<", start)]


def _binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: {INSTALL}")
    return path


@contextmanager
def chromium() -> Iterator[webdriver.Chrome]:
    """One headless Chromium whose network is off (offline, and no proxy or name reaches
    anything): a page can only render what it carries."""
    options = webdriver.ChromeOptions()
    options.binary_location = _binary("chromium")
    for argument in (
        "--headless=new",
        "--no-sandbox",  # the tests run as root
        "--disable-gpu",
        "--window-size=1280,3000",
        "--proxy-server=socks5://127.0.0.1:9",
        "--host-resolver-rules=MAP * ~NOTFOUND",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(_binary("chromedriver")), options=options)
    try:
        driver.execute_cdp_cmd("Network.enable", {})
        driver.execute_cdp_cmd(
            "Network.emulateNetworkConditions",
            {"offline": True, "latency": 0, "downloadThroughput": 0, "uploadThroughput": 0},
        )
        yield driver
    finally:
        driver.quit()


def open_report(driver: webdriver.Chrome, path: Path) -> Page:
    """Open ``path`` and wait until its charts say they rendered (or failed)."""
    driver.get(path.resolve().as_uri())
    WebDriverWait(driver, RENDER_TIMEOUT_S).until(
        lambda d: d.execute_script(
            "return document.body.dataset.chartsRendered || document.body.dataset.chartsError"
        )
    )
    error = driver.execute_script("return document.body.dataset.chartsError || null")
    assert error is None, f"a chart failed to render: {error}"
    rendered = int(driver.execute_script("return document.body.dataset.chartsRendered"))
    pixels = {}
    for element in driver.find_elements(By.CSS_SELECTOR, "div.chart"):
        driver.execute_script("arguments[0].scrollIntoView()", element)
        pixels[element.get_attribute("data-chart") or ""] = _inked(element.screenshot_as_png)
    labels = driver.execute_script(MARKS)
    marks = {name: [_fields(label) for label in found] for name, found in labels.items()}
    return Page(
        marks=marks,
        dom=driver.execute_script("return document.documentElement.outerHTML"),
        charts_rendered=rendered,
        chart_pixels=pixels,
        resources=driver.execute_script(
            "return performance.getEntriesByType('resource').map(e => e.name)"
        ),
    )


def _inked(png: bytes) -> tuple[int, int, int]:
    """The screenshot's size and how many of its pixels are not (near) white."""
    with av.open(io.BytesIO(png), "r") as container:
        frame = next(container.decode(video=0)).reformat(format="gray")
    plane = frame.planes[0]
    data, stride = bytes(plane), plane.line_size
    pixels = b"".join(
        data[row * stride : row * stride + frame.width] for row in range(frame.height)
    )
    light = sum(pixels.count(bytes([value])) for value in range(240, 256))
    return frame.width, frame.height, len(pixels) - light


def _fields(label: str) -> dict[str, str]:
    """A mark's aria-label ("category: hate; flagged_rate: 1.2%") as a dict."""
    return dict(part.split(": ", 1) for part in label.split("; ") if ": " in part)
