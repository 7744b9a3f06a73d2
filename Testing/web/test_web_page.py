"""The whole user flow of the web page in Chromium, against the real server and the real app.

Phantom mammograms have a calcification cluster at a known pixel; the tests click on it in
the streamed slice view, classify, and compare what the page shows with what the server answers
any client for that ROI; the overlay is found in the picture the browser shows.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from web_helpers import (
    ANNOTATOR,
    click_at,
    colourful,
    pixel_to_ras,
    ras_to_screen,
    roi_screen_rect,
    set_state,
    state,
    view_box,
    view_pixels,
    view_until,
    wait_idle,
    wait_state,
)

pytestmark = [pytest.mark.server, pytest.mark.browser]


def _row(studies, index):
    row = studies["rows"][index]
    path = studies["folder"] / Path(row["image_path"]).name
    return row, path


def _page_rows(page):
    """The results table as the page renders it (attributes of each row element)."""
    rows = page.locator("tr.mc-result-row")
    return [
        {
            "model": rows.nth(i).get_attribute("data-model"),
            "probability": float(rows.nth(i).get_attribute("data-probability")),
            "decision": rows.nth(i).get_attribute("data-decision"),
            "shown": rows.nth(i).locator(".mc-probability").inner_text(),
        }
        for i in range(rows.count())
    ]


def _with_visible_map(server, studies) -> int:
    """A phantom row whose ensemble saliency map is not flat: the tiny random-weight test models
    saturate on some crops (P(malignant) = 1.0), where Grad-CAM's gradient, hence the map, is 0."""
    from microcalcai_logic.classify import parse_answer, read_saliency
    from microcalcai_logic.client import ServerClient

    client = ServerClient(server.url)
    for index, row in enumerate(studies["rows"]):
        roi = {"x": float(row["roi_x"]), "y": float(row["roi_y"]), "size": int(row["roi_size"])}
        answer, nrrd = client.infer(
            "ensemble",
            {"roi": roi, "saliency": "gradcam"},
            image_id=Path(row["image_path"]).stem,
            output="all",
        )
        result = parse_answer(answer, None, "ensemble")
        if nrrd is not None and read_saliency(nrrd, result.saliency_geometry).max() >= 0.5:
            return index
    pytest.fail("no phantom ROI gives the test models a saliency map with anything on it")


def _save(page, screenshots_dir, name, sections=None):
    """A picture of the whole page for docs/web.md, with only `sections` of the panel open."""
    if screenshots_dir is None:
        return
    shown = state(page, "open_sections")
    if sections is not None:
        set_state(page, "open_sections", sections)
        page.wait_for_timeout(600)
    page.screenshot(path=str(screenshots_dir / name))
    set_state(page, "open_sections", shown)


def test_upload_point_on_cluster_classify_matches_server_and_overlay_lies_in_roi(
    page, server, studies, screenshots_dir
):
    from microcalcai_logic.client import ServerClient

    row, path = _row(studies, _with_visible_map(server, studies))
    page.locator("input[type=file]").set_input_files(str(path))
    wait_state(page, f"has_image && image_name === '{path.stem}'")
    wait_idle(page)
    assert "uploaded" in page.inner_text("#mc-image-text")
    before = view_pixels(page)
    assert before.std() > 10, "the slice view shows no image"

    cluster = (float(row["roi_x"]), float(row["roi_y"]))
    page.click("#mc-place-point")
    set_state(page, "roi_size_mm", 9.6)  # 96 pixels of 0.1 mm, the phantom's ROI
    click_at(page, *ras_to_screen(page, pixel_to_ras(path, cluster)))
    wait_state(page, "roi !== null")
    roi = state(page, "roi")
    assert roi["size"] == 96
    # A click lands within a screen pixel of its target (here ~0.4 image pixels).
    assert abs(roi["x"] - cluster[0]) <= 1.0 and abs(roi["y"] - cluster[1]) <= 1.0, roi

    page.click("#mc-classify")
    wait_state(page, "results.length > 0 && busy === ''")
    shown = _page_rows(page)
    answer, _ = ServerClient(server.url).infer(
        "ensemble", {"roi": roi, "saliency": False}, upload=str(path), output="json"
    )
    assert [r["model"] for r in shown] == ["tiny-a", "tiny-b", "ensemble"]
    assert shown[-1]["probability"] == pytest.approx(answer["probability"], abs=1e-6)
    for member in ("tiny-a", "tiny-b"):
        mine = next(r for r in shown if r["model"] == member)
        assert mine["probability"] == pytest.approx(answer["members"][member], abs=1e-6)
        assert mine["shown"] == f"{answer['members'][member]:.3f}"
    assert shown[-1]["decision"] == answer["label"]
    assert answer["label"] in page.inner_text("#mc-result-text")
    assert page.locator("#mc-colorbar").is_visible()

    # The overlay: pixels that turn coloured when it is on lie in the ROI, and fill a good part.
    left, top, right, bottom = roi_screen_rect(page, path, roi)
    margin = 3
    rows_, cols_ = np.indices(view_pixels(page).shape[:2])
    inside = (
        (cols_ >= left - margin)
        & (cols_ <= right + margin)
        & (rows_ >= top - margin)
        & (rows_ <= bottom + margin)
    )
    roi_area = (right - left) * (bottom - top)
    with_overlay = view_until(page, lambda shot: colourful(shot)[inside].sum() > 0.2 * roi_area)
    _save(page, screenshots_dir, "web-classify.png", ["roi", "results"])
    bar_box = page.locator("#mc-colorbar").bounding_box()
    page.click("#mc-saliency-visible")
    wait_state(page, "saliency_visible === false")
    without = view_until(page, lambda shot: colourful(shot)[inside].sum() < 0.05 * roi_area)
    changed = colourful(with_overlay) & (
        np.abs(with_overlay.astype(int) - without.astype(int)).sum(axis=2) > 45
    )
    # The colour bar is drawn over the view's corner and hides with the overlay: not the overlay.
    bar, view = bar_box, view_box(page)
    changed[
        int(bar["y"] - view["y"]) : int(bar["y"] - view["y"] + bar["height"]) + 1,
        int(bar["x"] - view["x"]) : int(bar["x"] - view["x"] + bar["width"]) + 1,
    ] = False
    assert changed[inside].sum() > 0.2 * roi_area, (changed[inside].sum(), roi_area)
    assert changed[~inside].sum() <= 0.01 * changed.sum(), "overlay pixels far outside the ROI"
    page.click("#mc-saliency-visible")
    wait_state(page, "saliency_visible === true")


def test_demonstration_models_are_marked_on_the_page(page):
    """The server's tiny-a (and so the ensemble) is a demonstration model: the page says so under
    the model choice and beside each such row of the results (the first test classified)."""
    from microcalcai.server.bootstrap import INTENDED_USE

    note = page.locator("#mc-demonstration")
    assert note.is_visible()
    assert (
        "tiny-a" in note.inner_text()
        and "ensemble" in note.inner_text()
        and "tiny-b" not in note.inner_text()
    )
    assert INTENDED_USE in note.inner_text()
    marked = {
        row.get_attribute("data-model"): row.locator(".mc-demo").count()
        for row in page.locator("tr.mc-result-row").all()
    }
    assert marked == {"tiny-a": 1, "tiny-b": 0, "ensemble": 1}


def test_datastore_image_box_roi_and_label_reach_the_server(page, server, studies, screenshots_dir):
    from microcalcai_logic.client import ServerClient

    row, path = _row(studies, 1)
    image_id = path.stem
    set_state(page, "image_choice", image_id)
    page.click("#mc-open-image")
    wait_state(page, f"has_image && image_id === '{image_id}'")
    wait_idle(page)
    assert state(page, "roi") is None and state(page, "results") == []  # the previous image's are gone

    # Draw a box: one corner, then the opposite one, around the known cluster.
    cx, cy, half = float(row["roi_x"]), float(row["roi_y"]), 40.0
    page.click("#mc-draw-box")
    click_at(page, *ras_to_screen(page, pixel_to_ras(path, (cx - half, cy - half))))
    click_at(page, *ras_to_screen(page, pixel_to_ras(path, (cx + half, cy + half))))
    wait_state(page, "roi !== null")
    roi = state(page, "roi")
    assert abs(roi["x"] - cx) <= 1.5 and abs(roi["y"] - cy) <= 1.5 and abs(roi["size"] - 80) <= 2, roi

    page.click("#mc-classify")
    wait_state(page, "results.length > 0 && busy === ''")
    answer, _ = ServerClient(server.url).infer(
        "ensemble", {"roi": roi, "saliency": False}, image_id=image_id, output="json"
    )
    assert _page_rows(page)[-1]["probability"] == pytest.approx(answer["probability"], abs=1e-6)
    # Beside the ensemble's probability: how far its members agree, and the calibration note.
    spread = float(np.std(list(answer["members"].values())))
    assert state(page, "certainty")["spread"] == pytest.approx(spread, abs=1e-9)
    assert page.locator("tr.mc-result-row .mc-spread").inner_text() == f"±{spread:.3f}"
    assert f"spread ±{spread:.3f} over 2 models" in page.locator("#mc-agreement").inner_text()
    assert "calibration not measured" in page.locator("#mc-reliability").inner_text()

    set_state(page, "morphology", "fine_pleomorphic")
    set_state(page, "distribution", "grouped")
    page.click("#mc-malignant")
    wait_state(page, "label_text.includes('Saved')")
    _save(page, screenshots_dir, "web-annotate.png", ["results", "annotate"])
    stored = ServerClient(server.url).labels(image_id)
    saved = [
        a
        for a in stored["annotations"]
        if a["roi"]["x"] == pytest.approx(roi["x"]) and a["roi"]["y"] == pytest.approx(roi["y"])
    ]
    assert len(saved) == 1, stored
    assert saved[0]["label"] == "malignant" and saved[0]["roi"]["size"] == roi["size"]
    assert saved[0]["morphology"] == "fine_pleomorphic" and saved[0]["distribution"] == "grouped"
    assert saved[0]["annotator"] == ANNOTATOR  # `microcalcai web --annotator` names who labeled


def test_save_to_pacs_shows_what_was_stored_beside_the_study(page, studies):
    """On the datastore image and box of the previous test: the button's status line names the
    SR written beside the study, which cites the study's own instance."""
    import pydicom

    from microcalcai.dicom_out.readback import read_report

    image_id = state(page, "image_id")
    roi = state(page, "roi")
    assert image_id and roi is not None  # what the previous test left on the page
    page.click("#mc-save-pacs")
    wait_state(page, "pacs_text !== '' && busy === ''")
    assert state(page, "error") == ""
    shown = page.inner_text("#mc-pacs-text")
    assert shown.startswith("Saved to PACS") and "beside the study" in shown, shown
    uids = state(page, "pacs_uids")
    folder = studies["folder"] / "dicom-out" / image_id
    sr_path = folder / f"sr-{uids[0]}.dcm"
    assert sr_path.is_file() and uids[0] in shown and (folder / f"saliency-{uids[1]}.dcm").is_file()
    source = pydicom.dcmread(str(studies["folder"] / f"{image_id}.dcm"), stop_before_pixels=True)
    groups = {g["algorithm_name"]: g for g in read_report(sr_path)["groups"]}
    assert {g["referenced_sop_instance_uid"] for g in groups.values()} == {source.SOPInstanceUID}
    # The classification stored is the one the page shows.
    assert _page_rows(page)[-1]["probability"] == pytest.approx(groups["ensemble"]["probability"], abs=1e-6)


def test_next_sample_loads_its_image_with_the_proposed_roi(page, server, screenshots_dir):
    from microcalcai_logic.client import ServerClient

    set_state(page, "strategy", "first")
    peek = ServerClient(server.url)
    expected = peek.next_sample("first", {})
    assert expected.get("id"), expected
    peek.next_sample("first", {"count": 0})  # hand the leased ROI back: the page's annotator gets it
    page.click("#mc-next")
    wait_state(page, f"image_id === '{expected['id']}' && busy === ''")
    assert state(page, "roi") == {
        "x": pytest.approx(expected["roi"]["x"], abs=0.01),
        "y": pytest.approx(expected["roi"]["y"], abs=0.01),
        "size": expected["roi"]["size"],
    }
    assert expected["id"] in page.inner_text("#mc-sample-text")
    pixels = view_pixels(page)
    assert pixels.std() > 10, "the sample's image is not shown"
    # The proposed ROI box is drawn (a yellow outline) on the image.
    yellow = (pixels[..., 0] > 180) & (pixels[..., 1] > 150) & (pixels[..., 2] < 90)
    assert yellow.sum() > 50
    _save(page, screenshots_dir, "web-next-sample.png", ["image", "learn"])


def test_errors_are_plain_words_and_the_page_stays_usable(page, server, studies, tmp_path):
    bad = tmp_path / "notes.png"
    bad.write_text("this is not an image")
    page.locator("input[type=file]").set_input_files(str(bad))
    wait_state(page, "error !== '' && busy === ''")
    assert "Cannot read 'notes.png' as an image" in state(page, "error")
    assert "Cannot read" in page.inner_text("#mc-error")
    assert page.locator("#mc-error").is_visible()

    # A point off the image: the page says so and classification refuses in the same words.
    row, path = _row(studies, 2)
    set_state(page, "image_choice", path.stem)
    page.click("#mc-open-image")
    wait_state(page, f"has_image && image_id === '{path.stem}' && busy === ''")
    # Zoom buttons change the view's scale (XY-to-RAS); Fit brings the whole image back.
    fitted = state(page, "view_geometry")["xy_to_ras"][0]
    page.click("#mc-zoom-in")
    page.wait_for_function(
        "(fitted) => Math.abs(window.trame.state.get('view_geometry').xy_to_ras[0]) < 0.9 * Math.abs(fitted)",
        arg=fitted,
    )
    page.click("#mc-fit")
    page.wait_for_function(
        "(fitted) => Math.abs(window.trame.state.get('view_geometry').xy_to_ras[0] - fitted)"
        " < 1e-6 * Math.abs(fitted)",
        arg=fitted,
    )
    # Beside the image (the fitted view leaves a margin left and right of the square image).
    page.click("#mc-place-point")
    set_state(page, "roi_size_mm", 1)
    click_at(page, *ras_to_screen(page, pixel_to_ras(path, (-12.0, 180.0))))
    wait_state(page, "roi_text.includes('outside the image')")
    page.click("#mc-classify")
    wait_state(page, "error.includes('outside the image') && busy === ''")

    # The server unreachable: said in plain words; connecting again brings everything back.
    good = state(page, "server_url")
    set_state(page, "server_url", "http://127.0.0.1:9")
    page.click("#mc-connect")
    wait_state(page, "error.includes('Cannot reach') && busy === ''")
    assert "not connected" in page.inner_text("#mc-connection")
    set_state(page, "server_url", good)
    page.click("#mc-connect")
    wait_state(page, "connected === true && busy === ''")
    assert state(page, "error") == ""
    page.click("#mc-place-point")
    click_at(page, *ras_to_screen(page, pixel_to_ras(path, (float(row["roi_x"]), float(row["roi_y"])))))
    wait_state(page, "roi !== null")
    page.click("#mc-classify")
    wait_state(page, "results.length > 0 && busy === ''")
    assert state(page, "error") == ""


def test_training_shows_progress_and_stops(page, server, studies):
    from microcalcai_logic.client import ServerClient

    # Enough labels of each class, from several patients, for the server to start a training
    # (labels alternate: what they say does not matter to starting and stopping).
    client = ServerClient(server.url)
    for index, row in enumerate(studies["rows"]):
        roi = {"x": float(row["roi_x"]), "y": float(row["roi_y"]), "size": int(row["roi_size"])}
        label = "malignant" if index % 2 else "benign"
        client.save_label(Path(row["image_path"]).stem, {"roi": roi, "label": label})
    set_state(page, "train_model", "tiny-a")
    set_state(page, "train_epochs", 50)
    set_state(page, "train_manifest_labels", False)
    page.click("#mc-train")
    wait_state(page, "training === true")
    wait_state(page, "train_text.startsWith('Training tiny-a: epoch') || !training", timeout_ms=120_000)
    assert state(page, "train_text").startswith("Training tiny-a: epoch"), state(page, "train_text")
    assert 0.0 <= state(page, "train_progress") <= 100.0
    assert page.locator("#mc-stop").is_enabled()
    page.click("#mc-stop")
    wait_state(page, "training === false", timeout_ms=120_000)
    assert "stopped" in state(page, "train_text") and "unchanged" in page.inner_text("#mc-train-text")
