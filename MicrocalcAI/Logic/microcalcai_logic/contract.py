"""What the MicrocalcAI server and its clients agree on, defined once.

The label vocabulary, the BI-RADS calcification terms, the ROI and its crop-origin rule, the ROI
size limits and the columns of predictions.csv. Both sides import this module: the Slicer Logic
(this package, Python 3.9, no torch) and the `microcalcai` library and server. It lives in the
Logic package because Slicer installs only the Logic; the library depends on the Logic package
for it. Standard library only (and the Logic's own errors), so importing it costs nothing.
"""

import math
from dataclasses import dataclass
from typing import Optional

from .errors import LogicError

# -- labels -----------------------------------------------------------------------------------
# A ROI is benign or malignant; as a class index benign = 0, malignant = 1 (the positive class).
LABELS = ("benign", "malignant")
LABEL_INDEX: dict[str, int] = {label: index for index, label in enumerate(LABELS)}
POSITIVE_LABEL = "malignant"


def decision_label(malignant: bool) -> str:
    """The label of a decision: 'malignant' when it is positive, else 'benign'."""
    return POSITIVE_LABEL if malignant else LABELS[0]


# -- BI-RADS (5th edition) calcification descriptors ------------------------------------------
# Typically benign morphologies first, then those of suspicious morphology.
MORPHOLOGIES = (
    "punctate",
    "round",
    "coarse_popcorn",
    "rim",
    "vascular",
    "dystrophic",
    "milk_of_calcium",
    "skin",
    "suture",
    "large_rodlike",
    "amorphous",
    "coarse_heterogeneous",
    "fine_pleomorphic",
    "fine_linear_branching",
)
DISTRIBUTIONS = ("diffuse", "regional", "grouped", "linear", "segmental")


def term_key(value: str) -> str:
    """A term as the vocabulary spells it: 'Fine linear-branching' -> 'fine_linear_branching'."""
    return str(value).strip().lower().replace(" ", "_").replace("-", "_").replace("/", "_")


# -- ROI --------------------------------------------------------------------------------------
DEFAULT_ROI_SIZE = 512
MIN_ROI_SIZE = 8
# The largest ROI the server classifies or labels; 4096 pixels is most of a digitised film's width.
MAX_ROI_SIZE = 4096
# The longest side of an image the server takes. A full-field digital mammogram is at most ~4000 x
# 5600 pixels and a digitised film ~5000 x 7000; anything far beyond is a corrupt or hostile header,
# refused before its pixels are decoded (the server's memory budget limits the pixel count too).
MAX_IMAGE_SIDE = 20000


def crop_origin(center: float, size: int) -> int:
    """The stored pixel under the first pixel of a `size`-pixel crop centred on `center`: the
    pixel nearest the centre (halves round up) sits at index size // 2 of the crop."""
    return int(math.floor(float(center) + 0.5)) - int(size) // 2


@dataclass(frozen=True)
class PixelRoi:
    """A square of `size` x `size` stored pixels centred on (x = column, y = row). `height` is
    set only for a whole image that is not square (a whole-image model's ROI in a DICOM SR)."""

    x: float
    y: float
    size: int
    height: Optional[int] = None

    @classmethod
    def whole_image(cls, rows: int, cols: int) -> "PixelRoi":
        return cls((cols - 1) / 2.0, (rows - 1) / 2.0, int(cols), int(rows))

    def as_params(self) -> dict[str, float]:
        """The ROI as the server's JSON takes and gives it: whole numbers without a fraction."""
        out = {"x": self.x, "y": self.y, "size": int(self.size)}
        for key in ("x", "y"):
            if float(out[key]).is_integer():
                out[key] = int(out[key])
        return out

    @classmethod
    def from_params(cls, params) -> "PixelRoi":
        """The ROI of a server answer ({"x", "y", "size"})."""
        try:
            return cls(float(params["x"]), float(params["y"]), int(params["size"]))
        except (KeyError, TypeError, ValueError):
            raise LogicError(f"The server's answer has no valid ROI (x, y, size): {params!r}.") from None

    @property
    def key(self) -> tuple[float, float, int]:
        """What identifies the ROI among an image's ROIs (centre to a thousandth of a pixel)."""
        return (round(float(self.x), 3), round(float(self.y), 3), int(self.size))

    def origin_xy(self) -> tuple[int, int]:
        """The stored pixel under the top-left pixel of the ROI's crop (`crop_origin`)."""
        return (crop_origin(self.x, self.size), crop_origin(self.y, self.size))


# -- predictions.csv (written by `microcalcai predict`, read by `microcalcai evaluate`) --------
# One row per ROI: case_id, patient_id, image_id, label, split, the members' columns, probability,
# threshold, decision (a label), model (docs/DESIGN.md). Evaluation needs only these three:
PREDICTION_REQUIRED_COLUMNS = ("case_id", "label", "probability")
MEMBER_PROBABILITY_PREFIX = "p_"  # p_<member>: that member's P(malignant)
MEMBER_THRESHOLD_PREFIX = "threshold_"  # threshold_<member>: its validation threshold
READER_PREFIX = "reader_"  # reader_<name>: a reader's ordinal scores
# Blank, or what the demonstration models that made the scores are for ("<models>: trained on
# synthetic mammograms, not for real images"): a report on the file says so at its top.
INTENDED_USE_COLUMN = "intended_use"


def label_of(value: object) -> Optional[str]:
    """A label cell as a label ('benign', 'malignant'; 0 and 1 as their codes), None if blank
    or not a label."""
    text = str(value).strip().lower() if value is not None else ""
    if text in LABEL_INDEX:
        return text
    if text in ("0", "1"):
        return LABELS[int(text)]
    return None
