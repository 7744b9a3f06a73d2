"""Put the chest wall on the left, recording the flip so coordinates still map to the stored grid."""

from __future__ import annotations

import dataclasses

import numpy as np

from microcalcai.io.image import DeferredPixels, Mammogram


def chest_wall_from_pixels(pixels: np.ndarray | DeferredPixels) -> str:
    """'left' or 'right': the side whose edge band holds more dense tissue.

    The breast meets the chest wall along a whole image edge while the nipple side ends in air,
    so the band along the chest wall is the brighter one. The bands skip the outer 2% of the
    width, where digitised film often has a bright or dark border.
    """
    cols = pixels.shape[1]
    start = int(cols * 0.02)
    stop = max(start + 1, int(cols * 0.15))
    left = float(np.mean(pixels[::4, start:stop]))
    right = float(np.mean(pixels[::4, cols - stop : cols - start]))
    return "right" if right > left else "left"


def horizontal_flip_affine(columns: int) -> np.ndarray:
    """Affine taking (x, y, 1) of the mirrored image to the original: x -> columns - 1 - x."""
    return np.array([[-1.0, 0.0, columns - 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])


def orient_chest_wall_left(image: Mammogram) -> Mammogram:
    """A copy of `image` with the chest wall at column 0.

    The side comes from the file when it says (DICOM Patient Orientation, kept by the reader in
    metadata["chest_wall_from_header"]), else from the pixels. `to_stored` composes the flip, so
    `pixel_to_stored` keeps returning stored coordinates of the source file.
    """
    side = image.metadata.get("chest_wall_from_header")
    source = "PatientOrientation"
    if side not in ("left", "right"):
        side, source = chest_wall_from_pixels(image.lazy_pixels), "image content"
    metadata = dict(image.metadata, chest_wall=side, chest_wall_source=source, flipped=side == "right")
    pixels = image.lazy_pixels  # passed on explicitly: replace() would read (and so make) .pixels
    if side == "left":
        return dataclasses.replace(image, pixels=pixels, metadata=metadata)
    if isinstance(pixels, DeferredPixels):
        flipped = pixels.flip_columns()
    else:
        flipped = np.ascontiguousarray(pixels[:, ::-1])
    to_stored = image.to_stored @ horizontal_flip_affine(image.shape[1])
    return dataclasses.replace(image, pixels=flipped, to_stored=to_stored, metadata=metadata)
