"""A source that cannot be referenced is refused clearly, and nothing half-written is left."""

from __future__ import annotations

import numpy as np
import pytest
from microcalcai_logic.contract import PixelRoi as Roi
from PIL import Image

from microcalcai.dicom_out import SourceError, read_source
from microcalcai.dicom_out.sr import ModelResult, classification_sr
from microcalcai.dicom_out.store import write_files
from microcalcai.io import write_mg_dicom


def test_a_png_is_not_a_source_to_reference(tmp_path):
    Image.fromarray(np.zeros((20, 20), np.uint8)).save(tmp_path / "image.png")
    with pytest.raises(SourceError, match="image.png: DICOM results need a DICOM source image"):
        read_source(tmp_path / "image.png")


@pytest.mark.parametrize("missing", ["SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID"])
def test_a_dicom_without_its_uids_is_refused_by_name(tmp_path, missing):
    path = write_mg_dicom(tmp_path / "x.dcm", np.zeros((16, 16), np.uint16), extra={missing: None})
    with pytest.raises(SourceError, match=f"lacks {missing}, which a result must cite"):
        read_source(path)


@pytest.mark.parametrize("key", ["StudyInstanceUID", "SOPInstanceUID"])
def test_a_dicom_whose_uid_is_malformed_is_refused_by_name(tmp_path, key):
    import warnings

    import pydicom

    path = write_mg_dicom(tmp_path / "x.dcm", np.zeros((16, 16), np.uint16))
    dataset = pydicom.dcmread(path)
    with warnings.catch_warnings():  # pydicom warns of the invalid value, and writes it all the same
        warnings.simplefilter("ignore")
        setattr(dataset, key, "../../y")
        dataset.save_as(path)
    with pytest.raises(SourceError, match=f"{key} is not a valid UID"):
        read_source(path)


def test_a_failed_write_leaves_no_file(tmp_path, mg_source):
    header = read_source(mg_source)
    sr = classification_sr(header, Roi(10, 10, 16), [ModelResult("m", "1", 0.5, 0.5)])
    sr.SOPInstanceUID = "not a uid"  # encodes, but set the pixel-free data set up to fail:
    sr.add_new(0x00100030, "DA", object())  # a value no writer can encode
    out = tmp_path / "out"
    with pytest.raises(Exception):  # noqa: B017 - pydicom's own error type for an unencodable value
        write_files([sr], out)
    assert not out.exists() or not any(out.iterdir())


def test_files_are_replaced_whole(tmp_path, mg_source):
    header = read_source(mg_source)
    sr = classification_sr(header, Roi(10, 10, 16), [ModelResult("m", "1", 0.5, 0.5)])
    (first,) = write_files([sr], tmp_path)
    (again,) = write_files([sr], tmp_path)
    assert first == again and [p.name for p in tmp_path.iterdir()] == [first.name]  # no temporary left
