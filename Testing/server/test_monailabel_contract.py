"""What MicrocalcAI takes from MONAI Label besides its app class, checked against the installed one.

Our routes (server/routes.py, train_routes.py) replace MONAI Label's at the same paths and call a
few of its endpoint functions; our app overrides methods MONAI Label calls. A MONAI Label release
that renames a field, a parameter or a result key must fail here, by name, not somewhere in a
request at run time.
"""

from __future__ import annotations

import asyncio
import inspect
import json

import pytest


def _names(function, leave_out=()) -> list[str]:
    return [name for name in inspect.signature(function).parameters if name not in leave_out]


def test_the_monailabel_release_is_the_one_the_route_policy_was_written_for():
    import monailabel

    assert monailabel.__version__ == "0.8.5", (
        f"MONAI Label {monailabel.__version__}: review server/routes.py POLICY, this file's checks and "
        "docs/server-api.md against the new release, then update the pin"
    )


def test_our_infer_route_takes_the_request_of_monailabels():
    """MONAI Label's client (and Slicer's MONAI Label module) send these fields: same names."""
    from monailabel.endpoints.infer import api_run_inference, run_inference

    from microcalcai.server.routes import infer

    theirs = _names(run_inference)
    assert theirs == _names(api_run_inference, leave_out=("user",))  # `user`: their auth dependency
    assert _names(infer) == theirs


def test_the_monailabel_functions_our_routes_call_keep_their_parameters():
    from monailabel.endpoints import activelearning, datastore, train
    from monailabel.endpoints.infer import send_response
    from monailabel.utils.async_tasks.task import AsyncTask
    from monailabel.utils.async_tasks.utils import processes

    expected = {
        send_response: ["datastore", "result", "output", "background_tasks"],
        activelearning.sample: ["strategy", "params", "user"],
        datastore.download_image: ["image", "check_only", "check_sum"],
        datastore.download_label: ["label", "tag", "check_only"],
        train.run_model: ["model", "params", "run_sync", "enqueue"],
        train.stop: [],
        processes: ["method"],
        AsyncTask.status: ["method", "all", "check_if_running"],
    }
    changed = {f.__qualname__: _names(f) for f, names in expected.items() if _names(f) != names}
    assert not changed, f"MONAI Label changed these functions' parameters: {changed}"


def test_the_app_methods_monailabel_calls_keep_their_shape():
    """MONAI Label calls `infer(request, datastore)` and `next_sample(request)` on our app;
    our infer's extra arguments are keyword-only, so MONAI Label's calls still fit."""
    from monailabel.interfaces.app import MONAILabelApp

    from microcalcai.server.app import MicrocalcApp

    assert _names(MONAILabelApp.infer) == ["self", "request", "datastore"]
    assert _names(MONAILabelApp.next_sample) == ["self", "request"]
    ours = inspect.signature(MicrocalcApp.infer).parameters
    assert list(ours)[:3] == ["self", "request", "datastore"]
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in list(ours.values())[3:])


def test_send_response_answers_from_the_result_keys_our_app_returns(tmp_path):
    """Our app's infer returns {"label", "tag", "file", "params"}; MONAI Label's send_response
    answers JSON from "params", a multipart with the file from "file", and removes that file
    after the answer (our saliency files rely on it)."""
    from fastapi import BackgroundTasks
    from monailabel.endpoints.infer import send_response

    answer = {"label": "malignant", "probability": 0.75}

    def result():
        saliency = tmp_path / "saliency.nrrd"
        saliency.write_bytes(b"NRRD0004\n")
        return saliency, {"label": str(saliency), "tag": "original", "file": str(saliency), "params": answer}

    saliency, made = result()
    tasks = BackgroundTasks()
    assert send_response(None, made, "json", tasks) == answer
    asyncio.run(tasks())
    assert not saliency.exists(), "MONAI Label no longer removes the result file after the answer"

    saliency, made = result()
    tasks = BackgroundTasks()
    multipart = send_response(None, made, "all", tasks)
    body = multipart.body
    assert multipart.media_type.startswith("multipart/form-data")
    assert json.dumps(answer).encode() in body and b'filename="saliency.nrrd"' in body and b"NRRD0004" in body
    asyncio.run(tasks())
    assert not saliency.exists()


@pytest.mark.server
def test_a_client_cannot_claim_an_upload_or_the_answer_type_through_params(server, http, server_env):
    """What the infer route decides (is `image` the request's upload? which output?) reaches our
    app as keyword arguments; params keys of the same names change nothing."""
    from server_helpers import ROI_SIZE, error_detail

    roi = {"roi": {"x": 100, "y": 100, "size": ROI_SIZE}}
    real = str(server_env["studies"] / "P0_L_CC.dcm")

    def post(params):
        return http.post(
            f"{server.url}/infer/tiny-a",
            params={"image": "P0_L_CC", "output": "json"},
            data={"params": json.dumps(params)},
            files={"_": ("", b"")},
            timeout=60,
        )

    forged = post({**roi, "image": real, "uploaded": True, "upload_path": real, "upload_name": "x.dcm"})
    assert forged.status_code == 400 and "contains a path" in error_detail(forged), forged.text
    asked = post({**roi, "output": "image"})
    assert asked.status_code == 200 and asked.headers["content-type"].startswith("application/json")
    served = http.get(f"{server.url}/info/", timeout=30).json()["models"]["tiny-a"]["version"]
    assert asked.json()["version"] == served  # the classification itself, not a saliency file
