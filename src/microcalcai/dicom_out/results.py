"""One classified ROI -> its DICOM objects in a folder: what `predict/explain --dicom-out` write."""

from __future__ import annotations

from pathlib import Path

from microcalcai_logic.contract import PixelRoi

from microcalcai.dicom_out.source import read_source
from microcalcai.dicom_out.sr import classification_sr, results_for
from microcalcai.dicom_out.store import write_files


def roi_datasets(
    header,
    roi: PixelRoi,
    predictor,
    probability: float,
    members: dict,
    saliency=None,
    *,
    name: str | None = None,
    version: str | None = None,
    **explained,
):
    """The SR, and the saliency SEG when a map is given (explained: crop, method, target).

    `name` and `version`: what the map's algorithm is called (default: the predictor's name and
    its card's version); the server gives its hosted name and served version.
    """
    from microcalcai.dicom_out.saliency import saliency_segmentation

    per_model, ensemble = results_for(predictor, probability, members, version=version)
    datasets = [classification_sr(header, roi, per_model, ensemble)]
    if saliency is not None:
        shown = ensemble if ensemble is not None else per_model[0]
        datasets.append(
            saliency_segmentation(
                header,
                saliency,
                explained["crop"],
                model=name or predictor.name,
                model_version=shown.version,
                method=explained["method"],
                target=explained["target"],
                demonstration=shown.demonstration,
            )
        )
    return datasets


def write_roi_results(
    folder, image_path, roi: PixelRoi | None, predictor, probability, members, saliency=None, **explained
):
    """Write them into `folder`/<image file stem>/; SourceError when the image cannot be referenced.

    `roi` None: the model classified the whole image, which is then the SR's region.
    """
    header = read_source(image_path)
    roi = roi or PixelRoi.whole_image(int(header.Rows), int(header.Columns))
    datasets = roi_datasets(header, roi, predictor, probability, members, saliency, **explained)
    return write_files(datasets, Path(folder) / Path(image_path).stem)
