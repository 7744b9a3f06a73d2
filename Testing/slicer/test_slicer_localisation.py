"""Where the saliency overlay lands, with a model that has learnt what a calcification is.

The server hosts a tf_efficientnet_lite0 trained here for about a minute to tell calcification
ROIs from normal tissue (server_helpers.trained_spot_model), so its Grad-CAM for 'malignant'
must fall on calcifications. The ROI is placed off the cluster's centre, in a different direction
per image and through a volume geometry with flipped and rotated axes, so a peak that merely sits
at the ROI's centre, or lands at random, fails.
"""

import sys
from pathlib import Path

import numpy as np
import pytest
from microcalcai_logic import MicrocalcAILogic
from microcalcai_logic import geometry as g
from microcalcai_logic.settings import LogicSettings
from slicer_test_helpers import GEOMETRIES

pytestmark = pytest.mark.server

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "server"))

OFFSETS = [(24, 24), (-24, 24), (24, -24), (-24, -24)]  # cluster centre -> ROI centre, pixels
COMPACT_MM = 6.0  # clusters no wider than this: a 9.6 mm ROI then has room away from them
NAME = "spotter"


@pytest.fixture(scope="module")
def studies(tmp_path_factory):
    from server_helpers import phantom_studies

    # 25.6 mm spot fields, so an ROI moved off the cluster still lies inside the image.
    return phantom_studies(tmp_path_factory.mktemp("localisation"), patients=16, field_size=256)


@pytest.fixture(scope="module")
def server(studies, tmp_path_factory):
    from server_helpers import trained_spot_model

    from microcalcai.server.launch import LocalServer
    from microcalcai.server.workspace import install_model, prepare_app

    workspace = tmp_path_factory.mktemp("localisation-workspace")
    prepare_app(workspace)
    model = trained_spot_model(tmp_path_factory.mktemp("localisation-model"))
    install_model(workspace, model, name=NAME)
    local = LocalServer(studies["folder"], workspace, env={"OMP_NUM_THREADS": "1"})
    local.start()
    yield local
    local.stop()


def _mask(studies, row) -> np.ndarray:
    from PIL import Image

    mask = np.asarray(Image.open(studies["phantom"] / row["mask_path"])) > 0
    assert mask.any(), row["mask_path"]
    return mask


def _compact_clusters(studies) -> list[dict]:
    """Rows whose calcifications fit in COMPACT_MM (grouped clusters; segmental ones fill the ROI)."""
    rows = []
    for row in studies["rows"]:
        ys, xs = np.nonzero(_mask(studies, row))
        if max(np.ptp(xs), np.ptp(ys)) * float(row["spacing_mm"]) <= COMPACT_MM:
            rows.append(row)
    assert len(rows) >= 4, f"only {len(rows)} compact clusters in the phantom studies"
    return rows


@pytest.mark.parametrize("geometry", ["one-flipped-axis", "rotated"])
def test_saliency_peak_lands_on_the_calcifications_not_the_roi_centre(
    scene, server, studies, tmp_path, geometry
):
    from microcalcai_logic.volumes import load_volume, mark_from_server
    from scipy.ndimage import distance_transform_edt
    from slicer.util import arrayFromVolume

    logic = MicrocalcAILogic(scene, settings=LogicSettings(server_url=server.url), cache_folder=str(tmp_path))
    logic.connect()
    logic.settings.saliency_method = "gradcam"
    spec = GEOMETRIES[geometry]
    peak_mm, chance_mm, centre_mm = [], [], []
    for index, row in enumerate(_compact_clusters(studies)):
        dx, dy = OFFSETS[index % len(OFFSETS)]
        path = studies["folder"] / Path(row["image_path"]).name
        volume = load_volume(scene, str(path))
        mark_from_server(volume, path.stem, logic.client.url)
        volume.SetSpacing(*spec["spacing"], 1.0)
        volume.SetOrigin(*spec["origin"])
        volume.SetIJKToRASDirections([list(r) for r in spec["directions"]])
        size = int(row["roi_size"])
        centre_xy = (float(row["roi_x"]) + dx, float(row["roi_y"]) + dy)
        point = g.pixel_to_world(volume, [centre_xy])[0]
        result = logic.classify(
            volume, point_ras=point, size_mm=size * np.sqrt(np.prod(spec["spacing"])), model=NAME
        )
        assert (result.roi.x, result.roi.y) == centre_xy

        # The overlay node's peak, taken to the image's pixels through MRML geometry only.
        node = logic.saliency_node()
        values = arrayFromVolume(node)[0]
        j, i = np.unravel_index(int(np.argmax(values)), values.shape)
        peak_ras = (g.parent_to_world(node) @ g.ijk_to_ras(node) @ [i, j, 0, 1])[:3]
        px, py = np.rint(g.world_to_pixel(volume, [peak_ras])[0, :2]).astype(int)

        distance = distance_transform_edt(~_mask(studies, row)) * float(row["spacing_mm"])
        x0, y0 = (int(v) for v in result.roi.origin_xy())
        assert x0 >= 0 and y0 >= 0 and x0 + size <= distance.shape[1] and y0 + size <= distance.shape[0]
        assert x0 <= px < x0 + size and y0 <= py < y0 + size, (px, py, result.roi)
        inside_roi = distance[y0 : y0 + size, x0 : x0 + size]
        peak_mm.append(distance[py, px])
        chance_mm.append(float(np.median(inside_roi)))  # a peak dropped anywhere in the ROI
        centre_mm.append(distance[int(centre_xy[1]), int(centre_xy[0])])
        scene.RemoveNode(volume)

    peak_mm, chance_mm, centre_mm = map(np.asarray, (peak_mm, chance_mm, centre_mm))
    report = f"peak {peak_mm.round(2)} mm, chance {chance_mm.round(2)}, ROI centre {centre_mm.round(2)}"
    # Peaks within about a millimetre of a calcification (0.1 mm pixels, 9.6 mm ROIs) ...
    assert np.median(peak_mm) <= 1.0 and (peak_mm <= 2.0).mean() >= 0.75, report
    # ... far closer than a peak dropped at random in the ROI, and closer than the ROI's centre.
    assert np.median(peak_mm) <= 0.5 * np.median(chance_mm), report
    assert np.median(peak_mm) < np.median(centre_mm), report
