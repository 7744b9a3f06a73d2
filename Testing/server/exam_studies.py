"""One set-up for the front ends' exam (BAC) tests (Slicer Logic and web page): a studies folder
of two phantom four-view exams, the second without its R MLO view, and a workspace hosting a tiny
whole-image model and a tiny ROI model."""

from __future__ import annotations

from pathlib import Path

import pytest

WHOLE_IMAGE_MODEL = "bac-tiny"
ROI_MODEL = "roi-tiny"


def exam_studies(root: Path) -> dict:
    """{"folder", "workspace", "complete": {"L CC": image id, ...}, "incomplete": {... no "R MLO"}}."""
    from server_helpers import bac_exam_studies, tiny_model, whole_image_model

    from microcalcai.server.workspace import install_model, prepare_app

    made = bac_exam_studies(root, exams=2)
    rows = made["rows"]
    exams = sorted({r["exam_id"] for r in rows})
    views = {
        exam: {f"{r['laterality']} {r['view']}": r["image_id"] for r in rows if r["exam_id"] == exam}
        for exam in exams
    }
    (made["folder"] / f"{views[exams[1]].pop('R MLO')}.dcm").unlink()
    workspace = root / "workspace"
    prepare_app(workspace)
    install_model(workspace, whole_image_model(root / "built", WHOLE_IMAGE_MODEL, image_size=128))
    install_model(workspace, tiny_model(root / "built", ROI_MODEL, 1))
    return {
        "folder": made["folder"],
        "workspace": workspace,
        "complete": views[exams[0]],
        "incomplete": views[exams[1]],
    }


# Module-scoped fixtures for the front ends' exam tests; their conftests import them.
@pytest.fixture(scope="module")
def bac(tmp_path_factory):
    return exam_studies(tmp_path_factory.mktemp("bac"))


@pytest.fixture(scope="module")
def bac_server(bac):
    from server_helpers import running_server

    with running_server(bac["folder"], bac["workspace"]) as local:
        yield local
