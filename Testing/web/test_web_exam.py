"""The web page's exam view in Chromium: a whole-image (BAC) model, the four views of an exam, the
verdict and per-view scores as the server answers them, and each view's map over that view.

Its own server (phantom four-view exams and a tiny whole-image model) and page, for this module.
"""

from __future__ import annotations

import numpy as np
import pytest
from exam_studies import ROI_MODEL, WHOLE_IMAGE_MODEL
from web_helpers import (
    colourful,
    pixel_to_ras,
    ras_to_screen,
    set_state,
    state,
    view_box,
    view_until,
    wait_idle,
    wait_state,
)

pytestmark = [pytest.mark.server, pytest.mark.browser]


# This module's page talks to the exam studies' server (exam_studies.bac_server).
@pytest.fixture(scope="module")
def studies(bac):
    return bac


@pytest.fixture(scope="module")
def server(bac_server):
    return bac_server


def _open(page, image_id):
    set_state(page, "image_choice", image_id)
    page.click("#mc-open-image")
    wait_state(page, f"has_image && image_id === '{image_id}'")
    wait_idle(page)


def _exam_rows(page):
    rows = page.locator("tr.mc-exam-row")
    return [
        {
            "image": rows.nth(i).get_attribute("data-image"),
            "view": rows.nth(i).get_attribute("data-view"),
            "probability": float(rows.nth(i).get_attribute("data-probability")),
            "decision": rows.nth(i).get_attribute("data-decision"),
            "shown": rows.nth(i).locator(".mc-probability").inner_text(),
            "current": rows.nth(i).get_attribute("data-shown") == "true",
        }
        for i in range(rows.count())
    ]


def _image_rect(page, path):
    """(left, top, right, bottom) of the whole image in the view's picture (outer pixel edges)."""
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    reader.ReadImageInformation()
    cols, rows = reader.GetSize()[:2]
    box = view_box(page)
    corners = [
        ras_to_screen(page, pixel_to_ras(path, (x, y)))
        for x in (-0.5, cols - 0.5)
        for y in (-0.5, rows - 0.5)
    ]
    xs = [c[0] - box["x"] for c in corners]
    ys = [c[1] - box["y"] for c in corners]
    return min(xs), min(ys), max(xs), max(ys)


def _mask(shape, rect, margin):
    left, top, right, bottom = rect
    rows, cols = np.indices(shape[:2])
    return (
        (cols >= left - margin)
        & (cols <= right + margin)
        & (rows >= top - margin)
        & (rows <= bottom + margin)
    )


def test_a_whole_image_model_swaps_classify_for_the_exam(page):
    assert WHOLE_IMAGE_MODEL in state(page, "whole_image_models")
    assert state(page, "hosted_models") == [ROI_MODEL]  # whole-image models are not trained here
    set_state(page, "model", ROI_MODEL)
    page.wait_for_timeout(300)
    assert page.locator("#mc-exam").count() == 0
    set_state(page, "model", WHOLE_IMAGE_MODEL)
    page.wait_for_selector("#mc-exam", timeout=10_000)
    assert page.locator("#mc-classify").is_disabled()


def test_exam_verdict_per_view_scores_and_each_views_map(page, server, studies, screenshots_dir):
    from microcalcai_logic.client import ServerClient

    views = studies["complete"]
    set_state(page, "model", WHOLE_IMAGE_MODEL)
    _open(page, views["L MLO"])
    page.click("#mc-exam")
    wait_state(page, "exam !== null && busy === ''")
    assert state(page, "error") == ""

    truth, _ = ServerClient(server.url).infer(
        WHOLE_IMAGE_MODEL, {"exam": True}, image_id=views["R CC"], output="json"
    )
    shown = _exam_rows(page)
    assert [r["view"] for r in shown] == ["L CC", "L MLO", "R CC", "R MLO"]
    assert [r["image"] for r in shown] == [v["image"] for v in truth["views"]]
    for row, served in zip(shown, truth["views"], strict=True):
        assert row["probability"] == pytest.approx(served["probability"], abs=1e-9)
        assert row["shown"] == f"{served['probability']:.3f}"
        assert row["decision"] == served["label"]
    assert [r["current"] for r in shown] == [False, True, False, False]  # the view opened stays shown
    verdict = page.inner_text("#mc-exam-verdict")
    exam = truth["exam"]
    words = "BAC present" if exam["decision"] else "no BAC"
    assert verdict.startswith(f"Exam of {exam['patient_id']}, {exam['study_date']}: {words}"), verdict
    assert f"P(BAC) = {exam['probability']:.3f}, threshold {exam['threshold']:.3f}; max of 4 views" in verdict
    assert "Demonstration model (trained on synthetic mammograms): not for real images" in verdict
    assert page.locator("#mc-colorbar").is_visible() and page.locator("tr.mc-result-row").count() == 0

    # Each view, shown by its row's button, carries its map over the whole view and nowhere else.
    for name in ("L MLO", "R CC", "L CC", "R MLO"):
        image_id = views[name]
        if state(page, "exam_view") != image_id:
            page.click(f"#mc-exam-show-{name.replace(' ', '')}")
            wait_state(page, f"exam_view === '{image_id}' && image_id === '{image_id}' && busy === ''")
        path = studies["folder"] / f"{image_id}.dcm"
        rect = _image_rect(page, path)
        inside = _mask(view_until(page, lambda shot: True).shape, rect, 2)
        area = (rect[2] - rect[0]) * (rect[3] - rect[1])
        shot = view_until(page, lambda s, inside=inside, area=area: colourful(s)[inside].sum() > 0.05 * area)
        coloured = colourful(shot)
        bar, box = page.locator("#mc-colorbar").bounding_box(), view_box(page)
        coloured[
            int(bar["y"] - box["y"]) : int(bar["y"] - box["y"] + bar["height"]) + 1,
            int(bar["x"] - box["x"]) : int(bar["x"] - box["x"] + bar["width"]) + 1,
        ] = False  # the colour bar is drawn over the view's corner: not the map
        assert coloured[inside].sum() > 0.05 * area, (name, coloured[inside].sum(), area)
        assert coloured[~inside].sum() <= 0.01 * max(coloured.sum(), 1), f"map outside view {name}"
        assert page.inner_text("#mc-image-text").startswith(image_id)
        if name == "L MLO" and screenshots_dir is not None:
            set_state(page, "open_sections", ["server", "results"])
            page.wait_for_timeout(600)
            page.screenshot(path=str(screenshots_dir / "web-exam.png"))
            set_state(page, "open_sections", ["server", "image", "roi", "results", "annotate", "learn"])
    # The overlay switch hides the map of the view shown.
    page.click("#mc-saliency-visible")
    wait_state(page, "saliency_visible === false")
    hidden = view_until(page, lambda s: colourful(s)[inside].sum() < 0.01 * area)
    assert colourful(hidden)[inside].sum() < 0.01 * area
    page.click("#mc-saliency-visible")
    wait_state(page, "saliency_visible === true")


def test_an_incomplete_exam_is_an_error_naming_the_missing_view(page, studies):
    set_state(page, "model", WHOLE_IMAGE_MODEL)
    _open(page, studies["incomplete"]["L CC"])
    assert state(page, "exam") is None and state(page, "exam_views") == []  # the last exam went
    page.click("#mc-exam")
    wait_state(page, "error !== '' && busy === ''")
    message = page.inner_text("#mc-error")
    assert "incomplete: it lacks R MLO (it has L CC, L MLO, R CC)" in message, message
    # The view alone still gets its score and its map.
    page.click("#mc-classify-view")
    wait_state(page, "exam_views.length === 1 && busy === ''")
    assert state(page, "error") == "" and _exam_rows(page)[0]["view"] == "L CC"
    assert page.inner_text("#mc-result-text").startswith("L CC: P(BAC) = ")
