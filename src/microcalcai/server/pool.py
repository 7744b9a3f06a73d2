"""The pool of candidate ROIs for active learning, and which of them are still unlabeled.

Candidate ROIs come from the studies folder's `manifest.csv` (the project's dataset format:
the rows whose `image_path` is a file of the folder); an image with no row gets one ROI on its
breast region, so a folder of bare mammograms (or a DICOMweb server) still has a pool.

Every candidate lies on breast tissue: its centre on the breast and at least MIN_TISSUE of its
area (an annotator asked to judge calcifications in air is wasting a label). The breast is the
largest region brighter than air (`tissue_mask`: mammograms are MONOCHROME2 once read, air near
0); a spot view filled with tissue is all breast. The masks are kept in the workspace
(`tissue_store`), so a server start does not screen every image again.
"""

from __future__ import annotations

import hashlib
import inspect
import logging
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from microcalcai_logic.contract import DEFAULT_ROI_SIZE, PixelRoi

from microcalcai.server.labels import roi_key
from microcalcai.server.tissue_store import TissueStore

LOG = logging.getLogger(__name__)
MANIFEST = "manifest.csv"
MIN_TISSUE = 0.5
# Air (tissue_mask): darker than AIR_LEVEL of the tissue's median, touching the image border, and
# covering AIR_AREA of the image or, flat, a quarter of that. Measured on phantom spot views and
# full fields and on the CBIS-DDSM films: the open field spans 65-80% of a full field with a
# spread of 0.6-6% of the tissue's; dark fat in a spot view forms patches of at most 9% of the
# field with a spread of 9% of the tissue's.
AIR_LEVEL = 0.15
AIR_AREA = 0.2
AIR_FLATNESS = 0.05
MASK_SIDE = 512  # the breast mask is computed on about this many pixels a side


@dataclass(frozen=True)
class Candidate:
    image_id: str
    roi: PixelRoi
    patient_id: str
    truth: str | None = None  # the manifest's label, when it has one

    def as_dict(self) -> dict:
        return {"id": self.image_id, "roi": self.roi.as_params(), "patient_id": self.patient_id}


class CandidatePool:
    def __init__(self, datastore, cache, store_folder: Path | None = None):
        self.datastore = datastore
        self.cache = cache
        self._stored = TissueStore(store_folder, _screen_settings())
        self._breast_rois: dict[str, PixelRoi] = {}
        self._tissue: dict[tuple, TissueMask] = {}
        self._manifest: tuple[float, dict[str, list[Candidate]]] | None = None
        self._lock = threading.Lock()

    def candidates(self) -> list[Candidate]:
        from_manifest = self._manifest_candidates()
        out: list[Candidate] = []
        for image_id in sorted(self.datastore.list_images()):
            listed = from_manifest.get(image_id)
            if listed:
                mask = self._tissue_of(image_id)
                on_tissue = [c for c in listed if mask is None or mask.holds(c.roi)]
                if len(on_tissue) < len(listed):
                    LOG.info(
                        "%s: %d manifest ROI(s) off the breast left out of the pool",
                        image_id,
                        len(listed) - len(on_tissue),
                    )
                out.extend(on_tissue)
            else:
                roi = self._breast_roi(image_id)
                if roi is not None:
                    out.append(Candidate(image_id, roi, self._image_patient(image_id)))
        return out

    def patient_of(self, image_id: str) -> str:
        """The image's patient: the manifest's, else the image's own PatientID, else the image. Reads
        no pixels (the candidates' tissue screen reads every image of the pool)."""
        listed = self._manifest_candidates().get(image_id)
        return listed[0].patient_id if listed else self._image_patient(image_id)

    def unlabeled(self, tag: str = "final", candidates: list[Candidate] | None = None) -> list[Candidate]:
        """The candidates (all of them, or those given: one snapshot of the pool) without a label."""
        done = {
            (image_id, roi_key(a))
            for image_id, anns in self.datastore.all_annotations(tag).items()
            for a in anns
        }
        everyone = self.candidates() if candidates is None else candidates
        return [c for c in everyone if (c.image_id, c.roi.key) not in done]

    def _manifest_candidates(self) -> dict[str, list[Candidate]]:
        folder = self.datastore.studies_folder()
        path = None if folder is None else folder / MANIFEST
        if path is None or not path.is_file():
            return {}
        stamp = path.stat().st_mtime_ns
        with self._lock:
            if self._manifest and self._manifest[0] == stamp:
                return self._manifest[1]
        from microcalcai.data.manifest import read_manifest

        frame = read_manifest(path, check_files=False, require_label=False)
        by_image: dict[str, list[Candidate]] = {}
        ids = {Path(self.datastore.get_image_uri(i)).name: i for i in self.datastore.list_images()}
        for row in frame.itertuples(index=False):
            image_id = ids.get(Path(str(row.image_path)).name)
            if image_id is None:
                continue
            size = getattr(row, "roi_size", None)
            size = int(size) if size is not None and not _missing(size) else DEFAULT_ROI_SIZE
            label = getattr(row, "label", None)
            by_image.setdefault(image_id, []).append(
                Candidate(
                    image_id,
                    PixelRoi(float(row.roi_x), float(row.roi_y), size),
                    str(row.patient_id),
                    None if _missing(label) else str(label),
                )
            )
        with self._lock:
            self._manifest = (stamp, by_image)
        return by_image

    def _image_patient(self, image_id: str) -> str:
        info = {}
        try:
            info = self.datastore.get_image_info(image_id) or {}
        except Exception:  # a remote store without this image's info: the image is its own patient
            pass
        return str(info.get("PatientID") or info.get("patient_id") or image_id)

    def _tissue_of(self, image_id: str) -> TissueMask | None:
        """The image's breast mask, computed once per file version (None: image unreadable, so
        the pool keeps its ROIs and the request that reads it says what is wrong)."""
        from microcalcai.server.images import datastore_image_path

        try:
            path = datastore_image_path(self.datastore, image_id)
            stat = path.stat()
        except Exception as exc:  # a remote image not fetched, a vanished file: judged on use
            LOG.warning("%s: no breast mask (%s)", image_id, exc)
            return None
        key = (image_id, str(path), stat.st_mtime_ns, stat.st_size)
        with self._lock:
            if key in self._tissue:
                return self._tissue[key]
        stored = self._stored.get(key)
        if stored is not None:
            mask = TissueMask(*stored)
            with self._lock:
                self._tissue[key] = mask
            return mask
        try:
            mask = tissue_mask(self.cache.read(path, name=image_id).pixels)
        except Exception as exc:  # a damaged image stays in the pool; infer on it answers a 4xx
            LOG.warning("%s: no breast mask (%s)", image_id, exc)
            # The cache now knows the file is bad: the studies' screen leaves it out from the next
            # listing on (and says so once) instead of every request trying it again.
            refresh = getattr(self.datastore, "refresh", None)
            if refresh is not None:
                refresh()
            return None
        self._stored.put(key, mask.mask, mask.step, mask.shape)
        with self._lock:
            self._tissue[key] = mask
        return mask

    def _breast_roi(self, image_id: str) -> PixelRoi | None:
        with self._lock:
            if image_id in self._breast_rois:
                return self._breast_rois[image_id]
        mask = self._tissue_of(image_id)
        if mask is None:
            return None
        roi = mask.deepest_roi()
        with self._lock:
            self._breast_rois[image_id] = roi
        return roi


@dataclass(frozen=True)
class TissueMask:
    """Where the breast is, on every `step`-th pixel of an image of `shape`."""

    mask: np.ndarray
    step: int
    shape: tuple[int, int]

    def fraction(self, roi: PixelRoi) -> float:
        """Share of the ROI's area on the breast (area outside the image counts as air)."""
        half = roi.size / 2
        top, left = (roi.y - half) / self.step, (roi.x - half) / self.step
        bottom, right = (roi.y + half) / self.step, (roi.x + half) / self.step
        rows = slice(max(0, int(np.floor(top))), max(0, int(np.ceil(bottom))))
        cols = slice(max(0, int(np.floor(left))), max(0, int(np.ceil(right))))
        area = max((bottom - top) * (right - left), 1e-9)
        return float(min(1.0, self.mask[rows, cols].sum() / area))

    def centre_on(self, roi: PixelRoi) -> bool:
        row, col = int(roi.y // self.step), int(roi.x // self.step)
        return 0 <= row < self.mask.shape[0] and 0 <= col < self.mask.shape[1] and bool(self.mask[row, col])

    def holds(self, roi: PixelRoi) -> bool:
        return self.centre_on(roi) and self.fraction(roi) >= MIN_TISSUE

    def deepest_roi(self, size: int = DEFAULT_ROI_SIZE) -> PixelRoi:
        """The ROI most on the breast (the largest share of tissue, area outside the image
        counting as air), ties going to the centre deepest in the breast: the centroid of a
        crescent-shaped breast can lie in air, and its deepest point can be at the chest wall."""
        from scipy.ndimage import distance_transform_edt, uniform_filter

        size = int(min(size, max(8, min(self.shape))))
        share = uniform_filter(
            self.mask.astype(np.float64), size=max(1, round(size / self.step)), mode="constant"
        )
        depth = distance_transform_edt(np.pad(self.mask, 1))[1:-1, 1:-1]
        score = np.round(share, 3) + 1e-6 * depth / max(depth.max(), 1.0)
        row, col = np.unravel_index(int(np.argmax(score)), score.shape)
        y = min(self.shape[0] - 1, row * self.step + self.step // 2)
        x = min(self.shape[1] - 1, col * self.step + self.step // 2)
        return PixelRoi(int(x), int(y), size)


def _screen_settings() -> tuple:
    """What the stored masks were found with: the screen's code and thresholds (a change to
    either screens every image again)."""
    try:
        code = hashlib.sha256(inspect.getsource(tissue_mask).encode()).hexdigest()
    except (OSError, TypeError):  # no source shipped: the thresholds alone
        code = None
    return (code, AIR_LEVEL, AIR_AREA, AIR_FLATNESS, MASK_SIDE)


def tissue_mask(pixels: np.ndarray) -> TissueMask:
    """The breast: everything but the air, holes filled, its largest region.

    Air is a dark region (below AIR_LEVEL of the median of the brighter side of Otsu's threshold;
    Otsu's threshold itself would cut the breast along the fat-gland border) that touches the
    image border and is either large (AIR_AREA of the image) or flat (the open field, clipped by
    the display window: its spread under AIR_FLATNESS of the tissue's). Fat in a spot view can
    be as dark, but in small textured patches: a spot view filled with tissue is all breast.
    """
    from scipy.ndimage import binary_fill_holes, binary_opening, label
    from skimage.filters import threshold_otsu

    step = max(1, max(pixels.shape) // MASK_SIDE)  # where the breast is needs no full resolution
    small = np.asarray(pixels[::step, ::step], dtype=np.float32)
    everything = TissueMask(np.ones(small.shape, dtype=bool), step, tuple(pixels.shape))
    if np.ptp(small) <= 0:
        return everything
    bright = small[small > threshold_otsu(small)]
    dark = binary_opening(small < AIR_LEVEL * float(np.median(bright)), iterations=2)
    regions, found = label(dark)
    border = np.unique(np.concatenate([regions[0], regions[-1], regions[:, 0], regions[:, -1]]))
    tissue_spread = float(small[~dark].std()) if (~dark).any() else 0.0
    areas = np.bincount(regions.ravel(), minlength=found + 1)
    air = np.zeros(small.shape, dtype=bool)
    # Only regions on the border and of a quarter of AIR_AREA can be air: a noisy view holds
    # hundreds of dark specks, and a full-image pass for each made this the pool's slowest step.
    for region in border[border > 0]:
        share = float(areas[region]) / regions.size
        if share < AIR_AREA / 4:
            continue
        inside = regions == region
        if share >= AIR_AREA or float(small[inside].std()) < AIR_FLATNESS * tissue_spread:
            air |= inside
    if not air.any():
        return everything
    breast, found = label(binary_opening(~air, iterations=2))
    if found == 0:
        return everything
    largest = np.argmax(np.bincount(breast.ravel())[1:]) + 1  # markers and burnt-in text dropped
    return TissueMask(binary_fill_holes(breast == largest), step, tuple(pixels.shape))


def breast_centre_roi(pixels: np.ndarray, size: int = DEFAULT_ROI_SIZE) -> PixelRoi:
    """An ROI deep in the breast of an image (see `TissueMask.deepest_roi`)."""
    return tissue_mask(pixels).deepest_roi(size)


def _missing(value) -> bool:
    try:
        return value is None or value == "" or bool(np.isnan(value))
    except TypeError:
        return False
