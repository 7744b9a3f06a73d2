"""Results as DICOM objects an archive keeps and viewers show (docs/dicom-out.md).

- `sr.classification_sr`: one TID 1500 Measurement Report per classified ROI (per model and
  for the ensemble: probability of cancer, threshold, decision, model name/version/checksum).
- `saliency.saliency_segmentation`: the saliency map as a fractional DICOM Segmentation over
  the source mammogram.
- `label_sr.label_sr`: an annotator's label (class, BI-RADS morphology and distribution).
- `store`: atomic files beside a study, or STOW-RS to a DICOMweb server.

All objects are built with highdicom from the source image's header (`source.read_source`);
a source that cannot be referenced (no DICOM, missing UIDs) is refused with SourceError.
"""

from microcalcai.dicom_out.source import SourceError, read_source

__all__ = ["SourceError", "read_source"]
