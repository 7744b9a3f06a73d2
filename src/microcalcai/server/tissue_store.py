"""The pool's breast masks kept in the workspace, so a server start does not screen every image
again.

Screening decodes every image of the pool (a full-field mammogram takes a tenth of a second or
more) to find its breast; a server restarted on thousands of images spent minutes on its first
Next sample. A mask is a few kB packed. It is filed under the image file's path, size and
modification time and the screen's settings: an edited image or a changed screen is screened
again, and a damaged file of the store is screened again rather than trusted.
"""

from __future__ import annotations

import hashlib
import io
import logging
from pathlib import Path

import numpy as np

from microcalcai.atomic import atomic_write_bytes

LOG = logging.getLogger(__name__)


class TissueStore:
    """Masks (boolean arrays with the step and image shape they stand for) by file identity."""

    def __init__(self, folder: Path | None, settings: tuple):
        self.folder = None if folder is None else Path(folder)
        self.settings = repr(settings)

    def _path(self, key: tuple) -> Path:
        name = hashlib.sha256(repr((self.settings, key)).encode()).hexdigest()[:32]
        return self.folder / name[:2] / f"{name}.npz"

    def get(self, key: tuple) -> tuple[np.ndarray, int, tuple[int, int]] | None:
        if self.folder is None:
            return None
        path = self._path(key)
        if not path.is_file():
            return None
        try:
            with np.load(io.BytesIO(path.read_bytes()), allow_pickle=False) as saved:
                if str(saved["key"]) != repr(key):  # a hash collision, however unlikely
                    return None
                shape = tuple(int(n) for n in saved["mask_shape"])
                mask = np.unpackbits(saved["packed"], count=shape[0] * shape[1]).reshape(shape)
                return mask.astype(bool), int(saved["step"]), tuple(int(n) for n in saved["image_shape"])
        except Exception as exc:  # a torn or foreign file: screen the image again
            LOG.warning("breast mask store: %s unreadable (%s); screening the image again", path.name, exc)
            return None

    def put(self, key: tuple, mask: np.ndarray, step: int, image_shape: tuple[int, int]) -> None:
        if self.folder is None:
            return
        buffer = io.BytesIO()
        np.savez(
            buffer,
            key=np.array(repr(key)),
            packed=np.packbits(mask.ravel()),
            mask_shape=np.array(mask.shape),
            step=np.array(step),
            image_shape=np.array(image_shape),
        )
        try:
            atomic_write_bytes(self._path(key), buffer.getvalue())
        except OSError as exc:  # a full or read-only workspace costs a screen at the next start
            LOG.warning("breast mask store: cannot write %s (%s)", self.folder, exc)
