"""A synthetic mammography phantom with known ground truth (masks, descriptors, best AUC).

Public surface: `generate_dataset` (DICOM MG + masks + ROI crops + manifest.csv + phantom.json),
`PhantomSettings`, the BI-RADS vocabulary (`MORPHOLOGIES`, `DISTRIBUTIONS`) and the malignancy
table (`malignancy_probability`, `expected_bayes_auc`). See docs/phantom.md.
"""

from microcalcai.phantom.dataset import PhantomSettings, SynthResult, generate_dataset
from microcalcai.phantom.malignancy import (
    DISTRIBUTIONS,
    MORPHOLOGIES,
    expected_bayes_auc,
    malignancy_probability,
)

__all__ = [
    "DISTRIBUTIONS",
    "MORPHOLOGIES",
    "PhantomSettings",
    "SynthResult",
    "expected_bayes_auc",
    "generate_dataset",
    "malignancy_probability",
]
