"""The pool of candidate ROIs for active learning, and which of them are still unlabeled.

Candidate ROIs come from the studies folder's `manifest.csv` (the project's dataset format:
the rows whose `image_path` is a file of the folder); an image with no row gets one ROI centred
on its breast region, so a folder of bare mammograms (or a DICOMweb server) still has a pool.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from microcalcai.server.labels import roi_key
from microcalcai.server.validation import DEFAULT_ROI_SIZE, Roi

LOG = logging.getLogger(__name__)
MANIFEST = "manifest.csv"


@dataclass(frozen=True)
class Candidate:
    image_id: str
    roi: Roi
    patient_id: str
    truth: str | None = None  # the manifest's label, when it has one

    def as_dict(self) -> dict:
        return {"id": self.image_id, "roi": self.roi.as_dict(), "patient_id": self.patient_id}


class CandidatePool:
    def __init__(self, datastore, cache):
        self.datastore = datastore
        self.cache = cache
        self._breast_rois: dict[str, Roi] = {}
        self._manifest: tuple[float, dict[str, list[Candidate]]] | None = None
        self._lock = threading.Lock()

    def candidates(self) -> list[Candidate]:
        from_manifest = self._manifest_candidates()
        out: list[Candidate] = []
        for image_id in sorted(self.datastore.list_images()):
            listed = from_manifest.get(image_id)
            if listed:
                out.extend(listed)
            else:
                out.append(Candidate(image_id, self._breast_roi(image_id), self._patient_of(image_id)))
        return out

    def unlabeled(self, tag: str = "final") -> list[Candidate]:
        done = {
            (image_id, roi_key(a))
            for image_id, anns in self.datastore.all_annotations(tag).items()
            for a in anns
        }
        return [c for c in self.candidates() if (c.image_id, c.roi.key) not in done]

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
                    Roi(float(row.roi_x), float(row.roi_y), size),
                    str(row.patient_id),
                    None if _missing(label) else str(label),
                )
            )
        with self._lock:
            self._manifest = (stamp, by_image)
        return by_image

    def _patient_of(self, image_id: str) -> str:
        info = {}
        try:
            info = self.datastore.get_image_info(image_id) or {}
        except Exception:  # a remote store without this image's info: the image is its own patient
            pass
        return str(info.get("PatientID") or info.get("patient_id") or image_id)

    def _breast_roi(self, image_id: str) -> Roi:
        with self._lock:
            if image_id in self._breast_rois:
                return self._breast_rois[image_id]
        from microcalcai.server.images import datastore_image_path

        mammogram = self.cache.read(datastore_image_path(self.datastore, image_id), name=image_id)
        roi = breast_centre_roi(mammogram.pixels)
        with self._lock:
            self._breast_rois[image_id] = roi
        return roi


def breast_centre_roi(pixels: np.ndarray, size: int = DEFAULT_ROI_SIZE) -> Roi:
    """An ROI on the centroid of the pixels above Otsu's threshold (the breast, not the air)."""
    from skimage.filters import threshold_otsu

    step = max(1, max(pixels.shape) // 512)  # the centroid needs no full resolution
    small = np.asarray(pixels[::step, ::step], dtype=np.float32)
    mask = small > threshold_otsu(small) if np.ptp(small) > 0 else np.ones_like(small, dtype=bool)
    rows, cols = np.nonzero(mask)
    y, x = float(rows.mean() * step), float(cols.mean() * step)
    return Roi(round(x), round(y), int(min(size, max(8, min(pixels.shape)))))


def _missing(value) -> bool:
    try:
        return value is None or value == "" or bool(np.isnan(value))
    except TypeError:
        return False
