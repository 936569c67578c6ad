"""End-to-end: the demo served on 127.0.0.1, driven by headless Chromium through Playwright.

Needs Debian's Chromium (``apt-get install -y chromium``) and ``pip install playwright`` (no
``playwright install``: the system browser is used). Screenshots go to ``tests/artifacts/``.
"""

from __future__ import annotations

import io
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"

pytestmark = [pytest.mark.browser, pytest.mark.slow]  # a Gradio server and headless chromium per test
if not CHROMIUM.exists():
    pytest.skip(f"{CHROMIUM} not found (apt-get install -y chromium)", allow_module_level=True)
pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
pytest.importorskip("gradio")

from playwright.sync_api import Page, expect, sync_playwright

import lseg
from lseg.app.demo import build_demo, launch_demo

BROWSER_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _scene(h: int = 240, w: int = 320, seed: int = 0) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """A photo-like scene (sky gradient, sun, green textured hills) and its region masks."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.zeros((h, w, 3), np.float32)
    img[..., 0], img[..., 1], img[..., 2] = 110 + 60 * yy / h, 160 + 50 * yy / h, 235 - 20 * yy / h
    sun = (yy - 0.2 * h) ** 2 + (xx - 0.75 * w) ** 2 < (0.1 * h) ** 2
    img[sun] = (250, 230, 120)
    grass = yy > 0.55 * h + 0.08 * h * np.sin(xx / w * 6.0)
    noise = rng.normal(0, 18, size=(h, w))
    img[grass] = np.stack([40 + noise, 120 + 1.5 * noise, 35 + noise], -1)[grass]
    return np.clip(img, 0, 255).astype(np.uint8), {"sky": ~sun & ~grass, "grass": grass, "sun": sun}


class RegionPrototypePredictor(lseg.LSegPredictor):
    """The real predictor, except that the labels of the test scene are embedded as the mean pixel
    embedding of their region (a random model's text embeddings match no region, so every pixel
    would get the same label and the page would show a single class). Other labels use the model's
    text encoder."""

    def __init__(self, model: lseg.LSeg, photo: np.ndarray, regions: dict[str, np.ndarray]) -> None:
        super().__init__(model, size=128)
        pixels = self.embed_image(photo).pixels
        full = torch.nn.functional.interpolate(pixels[None], size=photo.shape[:2], mode="bilinear")[0]
        self.prototypes = {
            name: torch.nn.functional.normalize(full[:, torch.from_numpy(mask)].mean(1), dim=0)
            for name, mask in regions.items()
        }

    def _encode_labels(self, labels: list[str]) -> torch.Tensor:
        encoded = super()._encode_labels(labels)
        for i, label in enumerate(labels):
            if label in self.prototypes:
                encoded[i] = self.prototypes[label]
        return encoded


@pytest.fixture(scope="module")
def scene() -> tuple[np.ndarray, dict[str, np.ndarray]]:
    return _scene()


@pytest.fixture(scope="module")
def predictor(scene: tuple[np.ndarray, dict[str, np.ndarray]]) -> lseg.LSegPredictor:
    torch.manual_seed(0)
    return RegionPrototypePredictor(lseg.create_model("lseg_tiny_test_p32"), *scene)


@pytest.fixture(scope="module")
def server(predictor: lseg.LSegPredictor) -> Iterator[str]:
    demo = build_demo(predictor, max_upload_mb=2, max_labels=16,
                      banner="Random weights (lseg_tiny_test_p32): the segmentation is noise.")
    _, url, _ = launch_demo(demo, host="127.0.0.1", port=_free_port(), max_upload_mb=2,
                            prevent_thread_lock=True, quiet=True)
    assert url.startswith("http://127.0.0.1:")
    try:
        yield url
    finally:
        demo.close()


@pytest.fixture(scope="module")
def page(server: str) -> Iterator[Page]:
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=BROWSER_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(server, wait_until="networkidle")
            yield page
        finally:
            browser.close()


def test_segment_in_the_browser(
    page: Page, predictor: lseg.LSegPredictor, scene: tuple[np.ndarray, dict[str, np.ndarray]], tmp_path: Path
) -> None:
    start = time.perf_counter()
    photo = scene[0]
    path = tmp_path / "meadow.png"
    Image.fromarray(photo).save(path)
    expect(page).to_have_title("LSeg: language-driven semantic segmentation")
    expect(page.locator("#lseg-banner")).to_contain_text("Random weights")

    page.locator("#lseg-image input[type=file]").set_input_files(str(path))
    expect(page.locator("#lseg-image img").first).to_be_visible(timeout=20_000)  # upload preview
    labels = page.locator("#lseg-labels textarea")
    expect(labels).to_have_value("dog, grass, sky, other")
    labels.fill("sky, grass, sun, dog")
    page.get_by_role("button", name="Segment").click()

    status = page.locator("#lseg-status")
    expect(status).to_contain_text("Segmented a 320x240 image into 4 labels", timeout=60_000)
    result = page.locator("#lseg-result")
    expect(result.locator("img").first).to_be_visible()
    # The masks of the labels present are drawn over the photo and listed in the legend.
    expected = predictor.segment(photo, ["sky", "grass", "sun", "dog"]).label_map
    present = [lb for i, lb in enumerate(["sky", "grass", "sun", "dog"]) if (expected == i).any()]
    assert len(present) >= 3
    assert result.locator("img").count() == 1 + len(present)  # base image + one mask per label
    for lb in present:
        expect(result.get_by_text(lb, exact=True)).to_be_visible()

    # The label-map download is the predictor's label map, pixel for pixel.
    link = page.locator("#lseg-file a").first
    expect(link).to_have_attribute("download", "meadow_labels.png")
    href = link.get_attribute("href")
    assert href
    body = page.request.get(href if href.startswith("http") else page.url.rstrip("/") + "/" + href.lstrip("/")).body()
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(body))), expected)

    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "demo.png"), full_page=True)
    print(f"browser segment test: {time.perf_counter() - start:.1f} s; screenshot {ARTIFACTS / 'demo.png'}")


def test_bad_labels_show_an_error(page: Page) -> None:
    page.locator("#lseg-labels textarea").fill("dog,,cat")
    page.get_by_role("button", name="Segment").click()
    expect(page.locator("#lseg-status")).to_contain_text("Error: Bad labels:", timeout=30_000)
    expect(page.locator("#lseg-status")).to_contain_text("empty")
    page.screenshot(path=str(ARTIFACTS / "demo_error.png"), full_page=True)


def test_oversized_upload_shows_an_error(page: Page, tmp_path: Path) -> None:
    big = tmp_path / "big.png"
    noise = np.random.default_rng(0).integers(0, 256, (1000, 1000, 3), dtype=np.uint8)
    Image.fromarray(noise).save(big)  # ~3 MB of incompressible pixels; the server allows 2 MB
    assert big.stat().st_size > 2 * 2**20
    page.reload(wait_until="networkidle")
    page.locator("#lseg-image input[type=file]").set_input_files(str(big))
    toast = page.get_by_text("exceed the maximum allowed size of 2.0 Mb")
    expect(toast).to_be_visible(timeout=20_000)
    page.wait_for_timeout(800)  # let the toast finish sliding in before the screenshot
    page.screenshot(path=str(ARTIFACTS / "demo_oversized.png"))  # the toast is fixed to the viewport
