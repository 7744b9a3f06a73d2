"""The Logic end to end against the real MicrocalcAI server on 127.0.0.1, on real MRML nodes:
phantom mammograms with known calcification clusters and a real CBIS-DDSM DICOM.

One server for the module (starting one costs ~15 s); tiny random-weight models keep it fast
on 2 cores, so these tests check wiring, geometry and data flow, not diagnostic accuracy.
"""

from pathlib import Path

import numpy as np
import pytest
from microcalcai_logic import LogicError, MicrocalcAILogic, ServerError
from microcalcai_logic import geometry as g
from microcalcai_logic.client import ServerClient
from microcalcai_logic.settings import LogicSettings
from slicer_test_helpers import GEOMETRIES, make_volume

pytestmark = pytest.mark.server


def _phantom_volume(logic, studies, index=0, mark=True):
    """A phantom image loaded from disk; with `mark`, known to the Logic as the server's image."""
    from microcalcai_logic.volumes import load_volume, mark_from_server

    row = studies["rows"][index]
    path = studies["folder"] / Path(row["image_path"]).name
    volume = load_volume(logic.scene, str(path))
    if mark:
        mark_from_server(volume, path.stem, logic.client.url)
    return volume, row


def test_connect_reads_models_and_remembers_the_url(logic, server):
    assert logic.model_names()[0] == "ensemble" and {"tiny-a", "tiny-b"} <= set(logic.model_names())
    assert logic.info.models["ensemble"].members == ("tiny-a", "tiny-b")
    assert logic.settings.server_url == server.url


def test_a_server_that_does_not_answer_in_time_is_a_clear_message(scene):
    """A listening socket that never answers: the read timeout (after the one repeat a GET gets)
    is reported as such, not as an unreachable server."""
    import socket

    from microcalcai_logic.client import ServerClient as Client

    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        client = Client(f"127.0.0.1:{silent.getsockname()[1]}", timeout=(2.0, 0.3))
        with pytest.raises(ServerError, match="did not answer within 0 s"):
            client.info()
        adapter = client.session.get_adapter(client.url)
        assert set(adapter.max_retries.allowed_methods) == {"GET", "HEAD"}  # uploads are never repeated


def test_the_logic_knows_which_models_are_demonstrations(logic):
    models = logic.info.models
    assert models["tiny-a"].demonstration and "not for real images" in models["tiny-a"].intended_use
    assert models["ensemble"].demonstration and not models["tiny-b"].demonstration
    notice = logic.info.demonstration_notice()  # the panel's status line after Connect
    assert notice.startswith("Demonstration models ensemble, tiny-a:") and "not for real images" in notice


def test_unreachable_server_is_a_clear_message(scene):
    from microcalcai_logic.client import DEFAULT_URL

    with pytest.raises(ServerError, match="Cannot reach the MicrocalcAI server at http://127.0.0.1:9"):
        MicrocalcAILogic(scene, remember=False).connect("127.0.0.1:9")
    assert DEFAULT_URL.startswith("http://127.0.0.1")


def test_classify_phantom_roi_fills_one_table_and_one_overlay(logic, studies):
    volume, row = _phantom_volume(logic, studies)
    roi_node = logic.scene.AddNewNodeByClass("vtkMRMLMarkupsROINode", "box")
    roi = g.PixelRoi(float(row["roi_x"]), float(row["roi_y"]), int(row["roi_size"]))
    g.place_roi_node(roi_node, volume, roi)
    first = logic.classify(volume, roi_node=roi_node)
    # The same answer the server gives any client for that image and ROI.
    answer, _ = ServerClient(logic.client.url).infer(
        "ensemble",
        {"roi": roi.as_params(), "saliency": False},
        image_id=Path(row["image_path"]).stem,
        output="json",
    )
    assert first.probability == pytest.approx(answer["probability"], abs=1e-6)
    assert first.roi == roi
    from microcalcai_logic.results import DEMONSTRATION, table_rows

    rows = table_rows(logic.results_table())
    assert [r["Model"] for r in rows] == ["tiny-a", "tiny-b", "ensemble"]
    assert rows[-1]["P(malignant)"] == pytest.approx(answer["probability"], abs=1e-6)
    assert rows[0]["P(malignant)"] == pytest.approx(answer["members"]["tiny-a"], abs=1e-6)
    assert rows[-1]["Decision"] == answer["label"] and rows[-1]["Version"] == answer["version"]
    assert all(r["Threshold"] == pytest.approx(0.5) for r in rows)
    # the demonstration member (and so the ensemble) says so in its row; tiny-b is not one
    assert [r["Use"] for r in rows] == [DEMONSTRATION, "", DEMONSTRATION]
    # Classifying again updates the same nodes.
    logic.classify(volume, roi_node=roi_node, model="tiny-b")
    assert logic.scene.GetNumberOfNodesByClass("vtkMRMLTableNode") == 1
    assert [r["Model"] for r in table_rows(logic.results_table())] == ["tiny-b"]
    saliency_nodes = [
        logic.scene.GetNthNodeByClass(i, "vtkMRMLScalarVolumeNode")
        for i in range(logic.scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode"))
    ]
    assert sum(n.GetAttribute("MicrocalcAI.Role") == "saliency" for n in saliency_nodes) == 1


@pytest.mark.parametrize("name", sorted(GEOMETRIES))
def test_saliency_peak_lies_in_the_roi_over_the_cluster_for_any_volume_geometry(logic, studies, name):
    from slicer.util import arrayFromVolume

    volume, row = _phantom_volume(logic, studies, index=1)
    geometry = GEOMETRIES[name]
    volume.SetSpacing(*geometry["spacing"], 1.0)
    volume.SetOrigin(*geometry["origin"])
    volume.SetIJKToRASDirections([list(r) for r in geometry["directions"]])
    cluster_xy = (float(row["roi_x"]), float(row["roi_y"]))  # the phantom's cluster centre
    point = g.pixel_to_world(volume, [cluster_xy])[0]
    size_mm = int(row["roi_size"]) * np.sqrt(np.prod(geometry["spacing"]))
    # EigenCAM: a random-weight test model's Grad-CAM can be all zero (no peak to follow);
    # the first principal component of its activations always has one.
    logic.settings.saliency_method = "eigencam"
    result = logic.classify(volume, point_ras=point, size_mm=size_mm)
    assert result.roi.size == int(row["roi_size"]) and (result.roi.x, result.roi.y) == cluster_xy
    node = logic.saliency_node()
    values = arrayFromVolume(node)[0]
    assert values.shape == (result.roi.size, result.roi.size) and np.ptp(values) > 0
    # The node's peak, in RAS through the node's own geometry ...
    j, i = np.unravel_index(int(np.argmax(values)), values.shape)
    peak = (g.parent_to_world(node) @ g.ijk_to_ras(node) @ [i, j, 0, 1])[:3]
    # ... is the server map's peak carried through the volume's geometry (independently):
    geo = result.saliency_geometry
    jj, ii = np.unravel_index(int(np.argmax(result.saliency)), result.saliency.shape)
    source_xy = (geo.origin_xy[0] + ii * geo.step_xy[0], geo.origin_xy[1] + jj * geo.step_xy[1])
    np.testing.assert_allclose(peak, g.pixel_to_world(volume, [source_xy])[0], atol=1e-6)
    # ... and lies inside the ROI, which is centred on the cluster.
    peak_xy = g.world_to_pixel(volume, [peak])[0, :2]
    x0, y0 = result.roi.origin_xy()
    inside = (x0 - 1e-6 <= peak_xy[0] <= x0 + result.roi.size - 1 + 1e-6) and (
        y0 - 1e-6 <= peak_xy[1] <= y0 + result.roi.size - 1 + 1e-6
    )
    assert inside, (peak_xy, result.roi)
    assert np.hypot(*(peak_xy - cluster_xy)) <= result.roi.size / np.sqrt(2)
    # The overlay's corners sit on the ROI's corner pixels in RAS.
    corners = [(0, 0), (result.roi.size - 1, result.roi.size - 1)]
    for ci, cj in corners:
        np.testing.assert_allclose(
            (g.ijk_to_ras(node) @ [ci, cj, 0, 1])[:3],
            g.pixel_to_world(volume, [(x0 + ci, y0 + cj)])[0],
            atol=1e-6,
        )


def test_local_files_are_uploaded_and_give_the_datastore_answer(logic, studies):
    by_id, row = _phantom_volume(logic, studies, index=2)
    local, _ = _phantom_volume(logic, studies, index=2, mark=False)
    roi = g.PixelRoi(float(row["roi_x"]), float(row["roi_y"]), int(row["roi_size"]))
    point = g.pixel_to_world(local, [(roi.x, roi.y)])[0]
    size_mm = roi.size * np.sqrt(np.prod(g.pixel_spacing_mm(local)))
    uploaded = logic.classify(local, point_ras=point, size_mm=size_mm)
    from_store = logic.classify(
        by_id, point_ras=g.pixel_to_world(by_id, [(roi.x, roi.y)])[0], size_mm=size_mm
    )
    # The local file reached the datastore once, de-identified, under a digest id of its own.
    assert uploaded.image_id.startswith("local-") and from_store.image_id == Path(row["image_path"]).stem
    assert local.GetAttribute("MicrocalcAI.ImageId") == uploaded.image_id
    assert uploaded.probability == pytest.approx(from_store.probability, abs=1e-5)


def test_real_cbis_ddsm_dicom_classified_from_an_roi_box(logic, real_mammograms):
    from microcalcai_logic.results import table_rows
    from microcalcai_logic.volumes import load_volume

    volume = load_volume(logic.scene, str(real_mammograms[0]))
    cols, rows = g.image_size(volume)
    roi_node = logic.scene.AddNewNodeByClass("vtkMRMLMarkupsROINode", "box")
    roi_node.SetCenter(*g.pixel_to_world(volume, [(cols / 2, rows / 2)])[0])
    roi_node.SetSize(20.0, 20.0, 1.0)  # mm; CBIS-DDSM files carry no spacing: 1 mm pixels
    result = logic.classify(volume, roi_node=roi_node)
    assert result.roi.size == 20 and result.image.get("rows") == rows and result.image.get("cols") == cols
    table = table_rows(logic.results_table())
    assert len(table) == 3 and all(0.0 <= r["P(malignant)"] <= 1.0 for r in table)
    assert {r["Decision"] for r in table} <= {"benign", "malignant"}


def test_roi_off_the_image_and_unknown_model_are_clear_errors(logic, studies):
    volume, _ = _phantom_volume(logic, studies)
    far = g.pixel_to_world(volume, [(5000.0, 5000.0)])[0]
    with pytest.raises(LogicError, match="outside the image"):
        logic.classify(volume, point_ras=far, size_mm=5.0)
    with pytest.raises(LogicError, match="does not host a model called 'resnet-x'"):
        logic.classify(
            volume, point_ras=g.pixel_to_world(volume, [(50.0, 50.0)])[0], size_mm=5.0, model="resnet-x"
        )


def test_next_sample_then_annotate_reaches_the_datastore(logic):
    sample = logic.next_sample(strategy="first")
    assert sample is not None and logic.volume.GetAttribute("MicrocalcAI.ImageId") == sample.image_id
    assert sample.strategy == "first"  # the name the panel shows, not MONAI Label's record
    roi_node = logic.scene.GetFirstNodeByName("MicrocalcAI ROI")
    assert g.roi_from_markups(logic.volume, roi_node) == sample.roi
    logic.classify(logic.volume, roi_node=roi_node)
    annotations = logic.annotate(
        "malignant",
        volume_node=logic.volume,
        roi_node=roi_node,
        morphology="fine_pleomorphic",
        distribution="grouped",
    )
    saved = [a for a in annotations if g.PixelRoi.from_params(a["roi"]) == sample.roi]
    assert (
        len(saved) == 1 and saved[0]["label"] == "malignant" and saved[0]["morphology"] == "fine_pleomorphic"
    )
    # Read back from the server's datastore by another client.
    listing = ServerClient(logic.client.url).datastore()
    labels = listing["objects"][sample.image_id]["labels"]
    assert "final" in labels
    stored = ServerClient(logic.client.url).labels(sample.image_id)  # a local datastore names labels by image
    assert any(
        a["label"] == "malignant" and g.PixelRoi.from_params(a["roi"]) == sample.roi
        for a in stored["annotations"]
    )
    # Labeled now: the next "first" sample is another ROI.
    following = logic.next_sample(strategy="first")
    assert following is None or (following.image_id, following.roi) != (sample.image_id, sample.roi)
    with pytest.raises(LogicError, match="BI-RADS morphology"):
        logic.annotate("benign", morphology="sparkly")


def test_next_sample_asks_for_the_servers_default_strategy_unless_told(logic):
    """The measured best (`auto`: uncertain while the labels are few, then random;
    benchmarks/RESULTS.md) is what a new user's Next sample asks for, and the server lists it
    first."""
    from microcalcai.server.strategies import DEFAULT_STRATEGY

    assert logic.settings.strategy == DEFAULT_STRATEGY == "auto"
    assert list(logic.info.strategies)[0] == DEFAULT_STRATEGY
    sample = logic.next_sample()
    assert sample is not None and sample.strategy == DEFAULT_STRATEGY
    assert sample.stage == "uncertain" and sample.proposer == "auto (uncertain stage)"  # few labels yet


def test_labelling_a_local_image_adds_it_to_the_datastore_once(logic, studies):
    from microcalcai_logic.datastore import open_image

    local, row = _phantom_volume(logic, studies, index=4, mark=False)
    roi = g.PixelRoi(float(row["roi_x"]), float(row["roi_y"]), int(row["roi_size"]))
    before = set(ServerClient(logic.client.url).datastore()["objects"])
    logic.classify(
        local,
        point_ras=g.pixel_to_world(local, [(roi.x, roi.y)])[0],
        size_mm=roi.size * np.sqrt(np.prod(g.pixel_spacing_mm(local))),
    )
    annotations = logic.annotate("benign", volume_node=local, roi=roi, distribution="grouped")
    image_id = local.GetAttribute("MicrocalcAI.ImageId")
    assert (
        image_id
        and image_id not in before
        and image_id in ServerClient(logic.client.url).datastore()["objects"]
    )
    assert [a["label"] for a in annotations] == ["benign"]
    assert ServerClient(logic.client.url).labels(image_id)["annotations"][0]["distribution"] == "grouped"
    # Labelling it again reuses the same datastore image.
    logic.annotate("malignant", volume_node=local, roi=roi)
    assert set(ServerClient(logic.client.url).datastore()["objects"]) - before == {image_id}
    from slicer.util import arrayFromVolume

    opened = open_image(logic.client, logic.scene, image_id, logic.cache_folder)
    assert opened.GetAttribute("MicrocalcAI.ImageId") == image_id
    assert np.array_equal(arrayFromVolume(opened), arrayFromVolume(local))
    # A volume that exists only in memory travels as NRRD and gets its own id.
    memory = make_volume(logic.scene, np.array(arrayFromVolume(local)[0]), name="scratch")
    logic.annotate("malignant", volume_node=memory, roi=roi)
    memory_id = memory.GetAttribute("MicrocalcAI.ImageId")
    # Its id is a digest only: a node's or file's name can carry a patient's name or id.
    assert memory_id.startswith("local-") and "scratch" not in memory_id and memory_id != image_id
    reopened = open_image(logic.client, logic.scene, memory_id, logic.cache_folder)
    assert np.array_equal(arrayFromVolume(reopened), arrayFromVolume(local))


def test_training_starts_reports_progress_and_stops_without_publishing(logic):
    from microcalcai_logic.training import wait_for

    served = logic.info.models["tiny-a"].version
    logic.start_training("tiny-a", max_epochs=50, include_manifest_labels=True)
    progress = wait_for(
        logic.client,
        "tiny-a",
        lambda p: p.running or p.state in ("failed", "done"),
        timeout_s=150,
        interval_s=0.5,
    )
    assert progress.state == "running", progress.message
    with pytest.raises(ServerError, match="already running") as refused:
        logic.start_training("tiny-a", max_epochs=1, include_manifest_labels=True)
    assert refused.value.status in (409, 429)  # docs/server-api.md says 409; MONAI Label answers 429
    logic.stop_training()
    stopped = wait_for(logic.client, "tiny-a", lambda p: not p.running, timeout_s=150, interval_s=0.5)
    assert stopped.state == "stopped" and "unchanged" in stopped.summary()
    assert logic.connect().models["tiny-a"].version == served


def test_the_module_self_test_passes_against_the_server(scene, server, tmp_path):
    from microcalcai_logic import selfcheck

    core = MicrocalcAILogic(scene, settings=LogicSettings(server_url=server.url), cache_folder=str(tmp_path))
    lines = []
    outcome = selfcheck.run(core, log=lines.append)
    assert outcome["rows"] == 3 and 0.0 <= outcome["probability"] <= 1.0
    assert any("P(malignant)" in line for line in lines)


def test_overlay_drawn_through_mrml_geometry_stays_in_the_roi(logic, studies, tmp_path):
    """Resample the saliency node onto the mammogram's pixels using only the two nodes' MRML
    geometry, as a slice view does; draw it (docs/images/slicer-overlay.png comes from here
    with MICROCALCAI_FIGURES_DIR set)."""
    import os

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle
    from slicer.util import arrayFromVolume

    volume, row = _phantom_volume(logic, studies, index=3)
    volume.SetSpacing(0.1, 0.1, 1.0)
    roi = g.PixelRoi(float(row["roi_x"]), float(row["roi_y"]), int(row["roi_size"]))
    roi_node = logic.scene.AddNewNodeByClass("vtkMRMLMarkupsROINode", "box")
    g.place_roi_node(roi_node, volume, roi)
    result = logic.classify(volume, roi_node=roi_node)
    node = logic.saliency_node()
    image = np.asarray(arrayFromVolume(volume)[0], dtype=float)
    values = arrayFromVolume(node)[0]
    jj, ii = np.mgrid[0 : values.shape[0], 0 : values.shape[1]]
    ras = (g.ijk_to_world(node) @ np.c_[ii.ravel(), jj.ravel(), np.zeros(ii.size), np.ones(ii.size)].T).T[
        :, :3
    ]
    xy = np.rint(g.world_to_pixel(volume, ras)[:, :2]).astype(int)
    inside = (xy[:, 0] >= 0) & (xy[:, 0] < image.shape[1]) & (xy[:, 1] >= 0) & (xy[:, 1] < image.shape[0])
    overlay = np.full(image.shape, np.nan)
    overlay[xy[inside, 1], xy[inside, 0]] = values.ravel()[inside]
    x0, y0 = roi.origin_xy()
    covered = np.argwhere(~np.isnan(overlay))
    assert covered.size and covered[:, 1].min() >= x0 and covered[:, 1].max() <= x0 + roi.size - 1
    assert covered[:, 0].min() >= max(y0, 0) and covered[:, 0].max() <= y0 + roi.size - 1
    fig, ax = plt.subplots(figsize=(4.2, 4.2), dpi=110)
    ax.imshow(image, cmap="gray")
    shown = np.ma.masked_less(overlay, 0.2)
    ax.imshow(shown, cmap="hot", vmin=0, vmax=1, alpha=0.55)
    ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), roi.size, roi.size, fill=False, edgecolor="#ffd400", lw=1.5))
    ax.plot(roi.x, roi.y, "c+", ms=10)
    ax.set_title(f"{result.model}: P(malignant) = {result.probability:.2f} (test model)", fontsize=9)
    ax.axis("off")
    fig.tight_layout()
    target = Path(os.environ.get("MICROCALCAI_FIGURES_DIR") or tmp_path) / "slicer-overlay.png"
    fig.savefig(target)
    plt.close(fig)
    assert target.stat().st_size > 10_000
