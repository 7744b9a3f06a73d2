"""Web page benchmark: Classify click to overlay on screen, against the server's own latency.

Starts the real server (two tiny test models and their ensemble, phantom spot views) and
`microcalcai web`, drives Debian's Chromium with Playwright, and for REPEATS rounds:
re-opens the image (so no overlay is on screen), places a point on the known cluster, then
times from the Classify click until the overlay's coloured pixels are in the browser's picture
of the view (the page itself reports the first frame with the overlay; one screenshot then
confirms it). The same request (image id, ROI, saliency) is then sent to the server directly
(HTTP round trip and the server's own `latencies.total`). The web layer's overhead is the
difference. Memory: resident set of the web app process after start, and its peak.

Usage: .venv/bin/python benchmarks/bench_web.py [--repeats 10] [--out RESULTS.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "Testing" / "web"))
sys.path.insert(0, str(REPO / "Testing" / "server"))


# In the page: when the Classify button is pressed, and for every frame the view's <img> finishes
# loading (it is then on screen), the share of the ROI's pixels with a clear colour. Exact to the
# frame, unlike screenshots (each ~0.2-0.4 s on this machine, and it blocks the page while it is taken).
FRAME_WATCH_JS = """([left, top, right, bottom]) => {
  const img = document.querySelector('#mc-view img');
  window.__mc = {frames: [], clicked: null};
  if (!window.__mcWatching) {
    window.__mcWatching = true;
    document.querySelector('#mc-classify').addEventListener(
      'click', () => { window.__mc.clicked = performance.now(); }, true);
    img.addEventListener('load', () => {
      const t = performance.now(), box = img.getBoundingClientRect(), r = window.__mcRoi;
      const sx = img.naturalWidth / box.width, sy = img.naturalHeight / box.height;
      const x0 = Math.floor(r[0] * sx), y0 = Math.floor(r[1] * sy);
      const w = Math.max(1, Math.ceil((r[2] - r[0]) * sx)), h = Math.max(1, Math.ceil((r[3] - r[1]) * sy));
      const canvas = document.createElement('canvas');
      canvas.width = img.naturalWidth; canvas.height = img.naturalHeight;
      const context = canvas.getContext('2d', {willReadFrequently: true});
      context.drawImage(img, 0, 0);
      const d = context.getImageData(x0, y0, w, h).data;
      let coloured = 0;
      for (let i = 0; i < d.length; i += 4) {
        const hi = Math.max(d[i], d[i + 1], d[i + 2]), lo = Math.min(d[i], d[i + 1], d[i + 2]);
        if (hi - lo >= 60) coloured += 1;
      }
      window.__mc.frames.push({t, share: coloured / (w * h)});
    });
  }
  window.__mcRoi = [left, top, right, bottom];
}"""


def frame_to_overlay_s(page) -> float:
    """Seconds from the Classify press to the first frame on screen with the overlay."""
    watched = page.evaluate("() => window.__mc")
    shown = [f["t"] for f in watched["frames"] if f["share"] > 0.2]
    if watched["clicked"] is None or not shown:
        return float("nan")
    return (min(shown) - watched["clicked"]) / 1000.0


def proc_status(pid: int, key: str) -> float:
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    import numpy as np
    from microcalcai_logic.client import ServerClient
    from playwright.sync_api import sync_playwright
    from server_helpers import host_tiny_models, phantom_studies
    from web_helpers import (
        WebApp,
        click_at,
        colourful,
        open_page,
        pixel_to_ras,
        ras_to_screen,
        roi_screen_rect,
        set_state,
        state,
        view_until,
        wait_state,
    )

    from microcalcai.server.launch import LocalServer

    chromium_args = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
    ]
    with tempfile.TemporaryDirectory(prefix="bench-web-") as scratch:
        root = Path(scratch)
        made = phantom_studies(root, patients=1)
        folder, row = made["folder"], made["rows"][0]
        image_id = Path(row["image_path"]).stem
        path = folder / (image_id + ".dcm")
        host_tiny_models(root / "workspace", root / "models", voting=True)
        server = LocalServer(folder, root / "workspace", env={"OMP_NUM_THREADS": "1"}).start()
        app = WebApp(server.url, root / "web.log")
        try:
            app.start()
            time.sleep(2.0)
            rss_started = proc_status(app.process.pid, "VmRSS")
            clicks, direct, internal, page_side, frames = [], [], [], [], []
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=chromium_args)
                page = open_page(browser.new_context(viewport={"width": 1500, "height": 1000}), app.url)
                client = ServerClient(server.url)
                for repeat in range(args.repeats + 1):  # the first round warms both sides up
                    set_state(page, "image_choice", image_id)
                    page.click("#mc-open-image")
                    wait_state(
                        page, f"has_image && image_id === '{image_id}' && busy === '' && results.length === 0"
                    )
                    page.click("#mc-place-point")
                    set_state(page, "roi_size_mm", 9.6)
                    click_at(
                        page,
                        *ras_to_screen(page, pixel_to_ras(path, (float(row["roi_x"]), float(row["roi_y"])))),
                    )
                    wait_state(page, "roi !== null")
                    roi = state(page, "roi")
                    left, top, right, bottom = roi_screen_rect(page, path, roi)
                    shape = view_until(page, lambda shot: True).shape[:2]
                    rows_, cols_ = np.indices(shape)
                    inside = (cols_ >= left) & (cols_ <= right) & (rows_ >= top) & (rows_ <= bottom)
                    area = (right - left) * (bottom - top)
                    page.evaluate(FRAME_WATCH_JS, [left, top, right, bottom])
                    started = time.perf_counter()
                    page.click("#mc-classify")
                    # Wait in the page for the overlay's frame, then confirm it with one screenshot.
                    # Polling screenshots meanwhile would block the page's main thread ~0.1-0.2 s per
                    # capture, and a frame arriving during one waited for it: that, not the server or
                    # the stream, was the slow mode of this measurement.
                    page.wait_for_function(
                        "() => window.__mc.frames.some(f => f.share > 0.2)", timeout=60_000
                    )
                    shot = view_until(
                        page, lambda s, m=inside, a=area: colourful(s)[m].sum() > 0.2 * a, timeout_s=60
                    )
                    elapsed = time.perf_counter() - started
                    if colourful(shot)[inside].sum() <= 0.2 * area:
                        raise SystemExit(f"round {repeat}: the overlay never appeared")
                    t0 = time.perf_counter()
                    answer, _ = client.infer(
                        "ensemble", {"roi": roi, "saliency": "gradcam"}, image_id=image_id
                    )
                    request = time.perf_counter() - t0
                    frame_s = frame_to_overlay_s(page)
                    if repeat:
                        frames.append(frame_s)
                        page_side.append(float(state(page, "timing")["page_s"]))
                        clicks.append(elapsed)
                        direct.append(request)
                        internal.append(float(answer.get("latencies", {}).get("total", float("nan"))))
                    print(
                        f"round {repeat}: click->overlay {elapsed:.3f} s (first frame {frame_s:.3f} s), "
                        f"server request {request:.3f} s",
                        flush=True,
                    )
                browser.close()
            rss_after = proc_status(app.process.pid, "VmRSS")
            peak = proc_status(app.process.pid, "VmHWM")
        finally:
            app.stop()
            server.stop()

    med = statistics.median
    result = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.machine()}, {platform.python_version()}",
        "repeats": args.repeats,
        "click_to_overlay_s": {"median": med(clicks), "min": min(clicks), "max": max(clicks)},
        "click_to_overlay_frame_s": {"median": med(frames), "min": min(frames), "max": max(frames)},
        "server_request_s": {"median": med(direct), "min": min(direct)},
        "server_internal_s": {"median": med(internal)},
        # the page's Python side of Classify (Logic call, table, overlay nodes), before any frame
        "page_python_s": {"median": med(page_side)},
        "load_average_1_5_15": list(os.getloadavg()),
        "web_overhead_s_median": med(clicks) - med(direct),
        "ratio_medians": med(clicks) / med(direct),
        "frame_overhead_s_median": med(frames) - med(direct),
        "web_app_rss_mb": {"after_start": rss_started, "after_run": rss_after, "peak": peak},
    }
    print(json.dumps(result, indent=2))
    print(
        "\n| | median | min |\n|---|---|---|\n"
        f"| Classify click -> overlay on screen | {med(clicks):.3f} s | {min(clicks):.3f} s |\n"
        f"| Classify press -> first frame with the overlay (in the page) | {med(frames):.3f} s "
        f"| {min(frames):.3f} s |\n"
        f"| same request straight to the server (HTTP) | {med(direct):.3f} s | {min(direct):.3f} s |\n"
        f"| server's own `latencies.total` | {med(internal):.3f} s | - |\n"
        f"| the page's Python side (Logic call, nodes) | {med(page_side):.3f} s | - |\n"
    )
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
