"""Driving the MicrocalcAI page in Chromium: its state, clicks at image pixels, view pictures.

Where a click lands is computed independently of the page's code: the image's pixel-to-RAS
geometry from the file itself (SimpleITK reads DICOM in LPS; Slicer shows RAS), and RAS to the
view's pixels from the slice view's XY-to-RAS matrix that the page publishes.
"""

from __future__ import annotations

import io
import os
import time
from pathlib import Path

import numpy as np

from microcalcai.server.launch import free_port
from microcalcai.web.process import PageProcess

STATE_TIMEOUT_MS = 90_000
ANNOTATOR = "web-tester"  # the name the test page stores with its labels


def open_page(context, url: str):
    page = context.new_page()
    page.goto(url)
    page.wait_for_selector("#mc-classify", timeout=STATE_TIMEOUT_MS)
    wait_state(page, "connected === true")
    return page


def state(page, name: str):
    return page.evaluate("(name) => window.trame.state.get(name)", name)


def set_state(page, name: str, value) -> None:
    page.evaluate("([name, value]) => window.trame.state.set(name, value)", [name, value])


def wait_state(page, condition: str, timeout_ms: int = STATE_TIMEOUT_MS) -> None:
    """Wait until a JavaScript condition over the page's state names holds, e.g. "busy === ''"."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    names = sorted(set(_identifiers(condition)))
    script = (
        "() => { const s = window.trame && window.trame.state; if (!s) return false; "
        + "".join(f"const {n} = s.get('{n}'); " for n in names)
        + f"return ({condition}); }}"
    )
    try:
        page.wait_for_function(script, timeout=timeout_ms)
    except PlaywrightTimeout:
        shown = {n: state(page, n) for n in ("error", "busy", "image_text", "roi_text", "train_text")}
        raise AssertionError(f"the page never reached {condition!r}; it shows {shown}") from None


def _identifiers(condition: str):
    import re

    reserved = {"true", "false", "null", "undefined", "length", "includes", "window", "trame"}
    code = re.sub(r"'[^']*'", "''", condition)  # names inside string literals are not state
    for word in re.findall(r"(?<![.\w])([A-Za-z_]\w*)", code):
        if word not in reserved:
            yield word


def wait_idle(page) -> None:
    page.wait_for_timeout(150)
    wait_state(page, "busy === ''")


def pixel_to_ras(image_path, xy) -> np.ndarray:
    """Where pixel (x = column, y = row) of a file lies in RAS, as Slicer places it (from LPS)."""
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetFileName(str(image_path))
    reader.ReadImageInformation()
    origin = np.array(reader.GetOrigin()[:2])
    spacing = np.array(reader.GetSpacing()[:2])
    direction = np.array(reader.GetDirection()).reshape(len(reader.GetSize()), -1)[:2, :2]
    lps = origin + direction @ (spacing * np.asarray(xy, dtype=float))
    return np.array([-lps[0], -lps[1], 0.0])


def view_box(page) -> dict:
    return page.locator("#mc-view img").first.bounding_box()


def ras_to_screen(page, ras) -> tuple[float, float]:
    """Page coordinates (CSS pixels) of a RAS point in the slice view."""
    geometry = state(page, "view_geometry")
    matrix = np.array(geometry["xy_to_ras"], dtype=float).reshape(4, 4)
    width, height = geometry["size"]
    xy = np.linalg.solve(matrix, np.r_[np.asarray(ras, dtype=float)[:3], 1.0])[:2]
    box = view_box(page)
    # VTK's XY origin is the view's bottom-left corner; the page's is its top-left.
    return box["x"] + xy[0] * box["width"] / width, box["y"] + (height - xy[1]) * box["height"] / height


def click_at(page, x: float, y: float) -> None:
    page.mouse.move(x, y)
    page.wait_for_timeout(100)
    page.mouse.click(x, y)
    page.wait_for_timeout(300)


def view_pixels(page, settle_s: float = 10.0) -> np.ndarray:
    """The slice view as the browser shows it, (rows, cols, 3) uint8, once frames stop changing."""
    from PIL import Image

    locator = page.locator("#mc-view img").first
    previous = None
    deadline = time.monotonic() + settle_s
    while True:
        page.wait_for_timeout(350)
        shot = np.asarray(Image.open(io.BytesIO(locator.screenshot())).convert("RGB"))
        if previous is not None and shot.shape == previous.shape and np.array_equal(shot, previous):
            return shot
        if time.monotonic() > deadline:
            return shot
        previous = shot


def view_until(page, condition, timeout_s: float = 30.0) -> np.ndarray:
    """The view's picture once `condition(pixels)` holds (frames arrive when the server has
    rendered them: seconds on a loaded machine); the last picture if it never does."""
    from PIL import Image

    locator = page.locator("#mc-view img").first
    deadline = time.monotonic() + timeout_s
    while True:
        shot = np.asarray(Image.open(io.BytesIO(locator.screenshot())).convert("RGB"))
        if condition(shot) or time.monotonic() > deadline:
            return shot
        page.wait_for_timeout(200)


def colourful(pixels: np.ndarray, min_chroma: int = 60) -> np.ndarray:
    """Pixels with a clear colour (a grey mammogram has R = G = B up to JPEG noise)."""
    values = pixels.astype(int)
    return (values.max(axis=2) - values.min(axis=2)) >= min_chroma


def roi_screen_rect(page, image_path, roi: dict) -> tuple[float, float, float, float]:
    """(left, top, right, bottom) in view-image pixels of a pixel ROI's outer edges."""
    x0 = round(roi["x"]) - roi["size"] // 2 - 0.5
    y0 = round(roi["y"]) - roi["size"] // 2 - 0.5
    corners = [
        ras_to_screen(page, pixel_to_ras(image_path, (x, y)))
        for x in (x0, x0 + roi["size"])
        for y in (y0, y0 + roi["size"])
    ]
    box = view_box(page)
    xs = [c[0] - box["x"] for c in corners]
    ys = [c[1] - box["y"] for c in corners]
    return min(xs), min(ys), max(xs), max(ys)


class WebApp(PageProcess):
    """`microcalcai web` on 127.0.0.1 for a test: the library's PageProcess (own process group,
    waits until the page answers, stopped by its process id), one torch thread, a free port."""

    def __init__(self, server_url: str, log_path: Path, args=("--annotator", ANNOTATOR), port: int = 0):
        super().__init__(
            server_url,
            "127.0.0.1",
            port or free_port(),
            log_path,
            extra_args=args,
            env=dict(os.environ, OMP_NUM_THREADS="1"),
        )

    def start(self, timeout: float = 120.0) -> WebApp:
        return super().start(timeout)
