"""A synthetic mammography phantom with known ground truth (masks, descriptors, best AUC).

Public surface: `generate_dataset` (DICOM MG + masks + ROI crops + manifest.csv + phantom.json),
`PhantomSettings`, the BI-RADS terms it draws (`MORPHOLOGIES`, a subset of the contract's, and
`DISTRIBUTIONS`), the malignancy table (`malignancy_probability`, `expected_bayes_auc`,
`empirical_auc`) and the crop ceiling (`expected_crop_ceiling_auc`). Other packages (the server's
first start) use only these names, never the generator's modules. See docs/phantom.md.
"""

from microcalcai.phantom.ceiling import expected_crop_ceiling_auc
from microcalcai.phantom.dataset import PhantomSettings, SynthResult, generate_dataset
from microcalcai.phantom.malignancy import (
    DISTRIBUTIONS,
    MORPHOLOGIES,
    empirical_auc,
    expected_bayes_auc,
    malignancy_probability,
)

__all__ = [
    "DISTRIBUTIONS",
    "MORPHOLOGIES",
    "PhantomSettings",
    "SynthResult",
    "empirical_auc",
    "expected_bayes_auc",
    "expected_crop_ceiling_auc",
    "generate_dataset",
    "malignancy_probability",
]
