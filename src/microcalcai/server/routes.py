"""Which HTTP routes the server offers: MONAI Label's own, MicrocalcAI's guarded versions, none else.

MONAI Label's app brings routes MicrocalcAI does not need (sessions, WSI, batch inference,
scoring, model upload, logs, OHIF, a DICOMweb proxy, ...) and datastore routes that take any
id, tag or file. `install(app)` rebuilds the app's route table from `POLICY`: a route is kept
as MONAI Label wrote it, replaced by the guarded endpoint below (same path, method and request
shape, so MONAI Label's client still works), or left out (404/405 JSON). A route that
`POLICY` does not name (a newer MONAI Label's) is left out too. docs/server-api.md lists them.
"""

from __future__ import annotations

import logging
import os
import re
from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, File, Form, UploadFile
from fastapi.routing import APIRoute

from microcalcai.server import train_routes
from microcalcai.server.errors import NotFound, RequestError
from microcalcai.server.uploads import storage_fault
from microcalcai.server.validation import check_image_id, check_tag, parse_params, parse_roi

LOG = logging.getLogger(__name__)

KEPT, GUARDED, ADDED, OFF = "kept", "guarded", "added", "off"

# (method, path) -> (status, why). The paths are MONAI Label 0.8.5's.
POLICY: dict[tuple[str, str], tuple[str, str]] = {
    ("GET", "/"): (KEPT, "API documentation page"),
    ("GET", "/docs"): (KEPT, "API documentation (ReDoc)"),
    ("GET", "/openapi.json"): (KEPT, "OpenAPI schema of the routes offered"),
    ("GET", "/favicon.ico"): (KEPT, "icon"),
    ("GET", "/info/"): (KEPT, "models, strategies, trainers, training progress; no server path"),
    ("POST", "/infer/{model}"): (GUARDED, "classification; ids, params, output and uploads checked"),
    ("POST", "/activelearning/{strategy}"): (GUARDED, "next ROI to annotate; params checked, no path"),
    ("GET", "/train/"): (GUARDED, "training status, without tracebacks or server paths"),
    ("POST", "/train/{model}"): (GUARDED, "fine-tune a hosted model; answer without server paths"),
    ("DELETE", "/train/"): (GUARDED, "stop the training"),
    ("GET", "/datastore/"): (GUARDED, "output=stats|all; output=train (server paths) refused"),
    ("PUT", "/datastore/image"): (GUARDED, "add a decoded, checked image; overwrite=true to replace"),
    ("GET", "/datastore/image"): (GUARDED, "download a stored image by id"),
    ("GET", "/datastore/image/info"): (GUARDED, "an image's info, without its server path"),
    ("PUT", "/datastore/label"): (GUARDED, "save one annotation; ROI must lie on the image"),
    ("GET", "/datastore/label"): (GUARDED, "an image's label document by id and tag"),
    ("DELETE", "/datastore/label"): (GUARDED, "remove an image's whole label document"),
    ("DELETE", "/datastore/label/annotation"): (ADDED, "remove one annotation (one ROI) of a document"),
    ("POST", "/reload"): (OFF, "would reload the app under running requests"),
    ("GET", "/model/{model}"): (OFF, "models are hosted with `microcalcai serve --model` and training"),
    ("GET", "/model/info/{model}"): (OFF, "see /info/ models"),
    ("PUT", "/model/{model}"): (OFF, "models are hosted with `microcalcai serve --model`"),
    ("DELETE", "/model/{model}"): (OFF, "models are never deleted through the API"),
    ("POST", "/infer/wsi/{model}"): (OFF, "no whole-slide images"),
    ("POST", "/infer/wsi_v2/{model}"): (OFF, "no whole-slide images"),
    ("GET", "/batch/infer"): (OFF, "no batch inference (spawns processes)"),
    ("POST", "/batch/infer/{model}"): (OFF, "no batch inference (spawns processes)"),
    ("DELETE", "/batch/infer"): (OFF, "no batch inference"),
    ("POST", "/train/"): (GUARDED, "refused with the models to name: use POST /train/{model}"),
    ("GET", "/scoring/"): (OFF, "no scoring methods (active learning scores on demand)"),
    ("POST", "/scoring/"): (OFF, "no scoring methods (spawns processes)"),
    ("POST", "/scoring/{method}"): (OFF, "no scoring methods (spawns processes)"),
    ("DELETE", "/scoring/"): (OFF, "no scoring methods"),
    ("PUT", "/datastore/"): (OFF, "deprecated alias: use PUT /datastore/image"),
    ("DELETE", "/datastore/image"): (OFF, "studies are removed by their owner on the server, not by clients"),
    ("DELETE", "/datastore/"): (OFF, "deprecated alias of DELETE /datastore/image"),
    ("HEAD", "/datastore/image"): (OFF, "checksum probe of MONAI Label's viewers; use GET"),
    ("PUT", "/datastore/image/info"): (OFF, "image info is written by the server only"),
    ("HEAD", "/datastore/label"): (OFF, "use GET /datastore/label"),
    ("GET", "/datastore/label/info"): (OFF, "label info holds server details; GET /datastore/label"),
    ("PUT", "/datastore/label/info"): (OFF, "label info is written by the server only"),
    ("PUT", "/datastore/updatelabelinfo"): (OFF, "deprecated; label info is written by the server only"),
    ("GET", "/datastore/dataset"): (OFF, "would send every study (DICOM patient headers) as one zip"),
    ("GET", "/logs/"): (OFF, "server logs stay on the server"),
    ("GET", "/logs/gpu"): (OFF, "server details stay on the server"),
    ("GET", "/ohif/{path:path}"): (OFF, "no OHIF viewer"),
    ("GET", "/session/{session_id}"): (OFF, "sessions are off"),
    ("PUT", "/session/"): (OFF, "sessions are off"),
    ("DELETE", "/session/{session_id}"): (OFF, "sessions are off"),
    ("MOUNT", "/static"): (OFF, "files of MONAI Label's viewers"),
}
for _op in ("wado", "qido", "stow", ""):
    for _method in ("GET", "POST"):
        _path = f"/proxy/dicom/{_op}/{{path:path}}" if _op else "/proxy/dicom/{path:path}"
        POLICY[(_method, _path)] = (OFF, "no DICOMweb proxy: images come through /datastore/image")

router = APIRouter()


def _app():
    from monailabel.interfaces.utils.app import app_instance

    return app_instance()


# -- inference ------------------------------------------------------------------------------
@router.post("/infer/{model}", summary="Classify an ROI (MicrocalcAI)")
async def infer(
    background_tasks: BackgroundTasks,
    model: str,
    image: str = "",
    session_id: str = "",
    params: Annotated[str, Form()] = "{}",
    file: Annotated[UploadFile | None, File()] = None,
    label: Annotated[UploadFile | None, File()] = None,
    output: str | None = None,
):
    from monailabel.endpoints.infer import send_response

    from microcalcai.server.uploads import save_upload

    if output not in (None, "json", "image", "all"):
        raise RequestError(f"output={_short(output)} is not offered; use output=json, image or all")
    if session_id:
        raise RequestError("sessions are off on this server; name a datastore image or upload the file")
    if label is not None:
        raise RequestError("/infer takes no label part; save labels with PUT /datastore/label")
    request = {"model": model, "image": image}
    client_params = parse_params(params)
    if client_params.get("model", model) != model:
        # MONAI Label lets params override the path; an answer from another model than the one
        # the URL names would be misread.
        raise RequestError(
            f"params.model names {_short(client_params['model'])} but the path names {model!r}; "
            "name the model in the path only (POST /infer/MODEL)"
        )
    upload = {}
    if file is not None and (file.filename or file.size):
        path, _, name = save_upload(file)
        request["image"] = str(path)
        upload = {"upload_path": str(path), "upload_name": name}
    elif not image and client_params.get("study") is None:
        raise RequestError(
            "no image given: pass image=ID (see GET /datastore/?output=all), upload a file, or name a "
            "study with params.study (whole-image models)"
        )
    # MONAI Label's order: the app's infer config, then the client's params (which may name `image`)
    request.update(_infer_config())
    request.update(client_params)
    # What the client may not decide goes as keyword arguments of our app's infer (app.py).
    result = _app().infer(request, output=output, **upload)
    return send_response(_app().datastore(), result, output, background_tasks)


def _infer_config() -> dict:
    config = _app().info().get("config", {}).get("infer", {})
    return dict(config) if isinstance(config, dict) else {}


# -- active learning and training -----------------------------------------------------------
@router.post("/activelearning/{strategy}", summary="Next ROI to annotate (MicrocalcAI)")
async def next_sample(strategy: str, params: dict | None = None):
    from monailabel.endpoints.activelearning import sample

    result = sample(strategy, params, None)
    result.pop("path", None)  # the image's file on the server: clients use its id
    return result


# MicrocalcAI's checks and cross-restart lock in front of MONAI Label's training (train_routes.py)
router.add_api_route("/train/", train_routes.api_status, methods=["GET"], summary="Training status")
router.add_api_route("/train/{model}", train_routes.api_run_model, methods=["POST"], summary="Train")
router.add_api_route("/train/", train_routes.api_stop, methods=["DELETE"], summary="Stop the training")
router.add_api_route("/train/", train_routes.api_run_all, methods=["POST"], include_in_schema=False)


# -- datastore -------------------------------------------------------------------------------
@router.get("/datastore/", summary="Images and labels of the studies (MicrocalcAI)")
async def datastore_listing(output: str | None = None):
    store = _app().datastore()
    if output in (None, "", "stats"):
        return scrub(store.status())
    if output == "all":
        return scrub(store.json())
    raise RequestError(f"output={_short(output)} is not offered; use output=stats or output=all")


@router.put("/datastore/image", summary="Add an image to the studies (MicrocalcAI)")
def add_image(
    image: str | None = None,
    overwrite: bool = False,
    params: Annotated[str, Form()] = "{}",
    file: Annotated[UploadFile, File()] = None,
):
    from microcalcai.server.uploads import ImageUploads, display_name, save_upload

    if file is None:
        raise RequestError("PUT /datastore/image needs the image as the multipart part 'file'")
    store = _app().datastore()
    if not isinstance(store, ImageUploads):
        raise RequestError(
            "this server's studies come from a DICOMweb server; add images there, not through this API",
            status=405,
        )
    info = parse_params(params)
    image_id = image or _stem(display_name(file.filename))
    check_image_id(image_id)
    path, _, name = save_upload(file)
    stored_id, written = store.add_image(image_id, str(path), info, overwrite=overwrite, name=name)
    return {"image": stored_id, "stored": written}


@router.get("/datastore/image", summary="Download a stored image (MicrocalcAI)")
async def download_image(image: str):
    from monailabel.endpoints.datastore import download_image as monai_download

    check_image_id(image)
    return monai_download(image)


@router.get("/datastore/image/info", summary="A stored image's info (MicrocalcAI)")
async def image_info(image: str):
    check_image_id(image)
    store = _app().datastore()
    if image not in set(store.list_images()):
        raise NotFound(f"unknown image id {image!r}; GET /datastore/?output=all lists the images")
    info = dict(store.get_image_info(image) or {})
    info.pop("path", None)
    return scrub(info)


@router.put("/datastore/label", summary="Save one annotation (MicrocalcAI)")
def save_label(
    image: str,
    params: Annotated[str, Form()] = "{}",
    tag: str = "final",
    label: Annotated[UploadFile, File()] = None,
):
    from microcalcai.server import labels
    from microcalcai.server.uploads import display_name, request_folder

    if label is None:
        raise RequestError("PUT /datastore/label needs the annotation as the multipart part 'label'")
    instance = _app()
    store = instance.datastore()
    check_image_id(image)
    tag = check_tag(tag)
    info = parse_params(params)
    path = request_folder() / "label.json"
    with open(path, "wb") as out:
        out.write(label.file.read(MAX_LABEL_BYTES + 1))
    if path.stat().st_size > MAX_LABEL_BYTES:
        raise RequestError(f"the label file is larger than {MAX_LABEL_BYTES} bytes; send one annotation", 413)
    if image not in set(store.list_images()):
        raise NotFound(f"unknown image id {image!r}; GET /datastore/?output=all lists the images")
    fields = labels.annotation_fields(path, info, display_name(label.filename))
    if "roi" in fields:
        _check_roi_on_image(instance, store, image, parse_roi(fields["roi"], where="label.roi"))
    try:
        label_id = store.save_label(image, str(path), tag, info)
    except OSError as exc:
        raise storage_fault(exc, f"save the label of {image!r}") from None
    answer = instance.on_save_label(image, label_id) or {}
    answer.update({"image": image, "label": label_id})
    return answer


MAX_LABEL_BYTES = 1 << 20  # one annotation is a few hundred bytes


def _check_roi_on_image(instance, store, image: str, roi) -> None:
    """A label whose ROI lies off its image, or on an image that does not decode, would make
    every later training fail. The decoded image stays in the cache (infer read it already)."""
    from microcalcai.server.images import image_file
    from microcalcai.server.validation import check_roi_inside

    mammogram = instance.cache.read(image_file(store, image), name=image)
    rows, cols = mammogram.shape[:2]
    check_roi_inside(roi, rows, cols, image=image)


@router.get("/datastore/label", summary="An image's label document (MicrocalcAI)")
async def download_label(label: str, tag: str = "final"):
    from monailabel.endpoints.datastore import download_label as monai_download

    check_image_id(label, what="label id")
    return monai_download(label, check_tag(tag))


@router.delete("/datastore/label", summary="Remove an image's label document (MicrocalcAI)")
def remove_label(id: str, tag: str = "final"):
    check_image_id(id, what="label id")
    try:
        _app().datastore().remove_label(id, check_tag(tag))
    except OSError as exc:
        raise storage_fault(exc, f"remove the label of {id!r}") from None
    return {}


@router.delete("/datastore/label/annotation", summary="Remove one annotation (MicrocalcAI)")
def remove_annotation(image: str, x: float, y: float, size: int, tag: str = "final"):
    """Remove the annotation of one ROI, keeping the image's other annotations."""
    check_image_id(image)
    tag = check_tag(tag)
    key = parse_roi({"x": x, "y": y, "size": size}).key
    try:
        return _app().datastore().remove_annotation(image, tag, key)
    except OSError as exc:
        raise storage_fault(exc, f"update the label of {image!r}") from None


# -- helpers --------------------------------------------------------------------------------
def _stem(name: str) -> str:
    return name.split(".", 1)[0] if not name.startswith(".") else name


def _short(value, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


_TRACE_FRAME = re.compile(r"^\s+(File \"|\^|~)")


def _server_path_pattern() -> re.Pattern:
    """Absolute paths that start in one of this machine's top-level folders (/tmp, /home, ...);
    API paths like /datastore/image start in none, so messages that name routes stay whole."""
    try:
        tops = sorted((n for n in os.listdir("/") if re.fullmatch(r"[\w.-]+", n)), key=len, reverse=True)
    except OSError:
        tops = []
    tops = tops or ["tmp", "home", "root", "usr", "etc", "var", "opt"]
    names = "|".join(re.escape(n) for n in tops)
    return re.compile(rf"(?<![\w.:/])/(?:{names})(?:/[^/\s'\",:()\[\]]+)*/?")


_SERVER_PATH = _server_path_pattern()


def scrub_text(text: str) -> str:
    """A message without the server's folders: a server path becomes its last part."""
    return _SERVER_PATH.sub(lambda m: m.group(0).rstrip("/").rsplit("/", 1)[-1] or "folder", text)


def scrub(value):
    """An answer without tracebacks or absolute server paths (strings, lists, dicts within)."""
    if isinstance(value, str):
        return scrub_text(value)
    if isinstance(value, dict):
        return {k: scrub(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        out, in_trace = [], False
        for item in value:
            if isinstance(item, str):
                if item.startswith("Traceback (most recent call last)"):
                    in_trace = True
                    continue
                if in_trace and (not item.strip() or _TRACE_FRAME.match(item) or item[:1].isspace()):
                    continue
                in_trace = False
            out.append(scrub(item))
        return out
    return value


def _walk(routes, seen=None):
    """(route, method, path) of every route, through routers included in others."""
    for route in routes:
        included = getattr(route, "original_router", None)
        if included is not None:
            yield from _walk(included.routes)
        elif isinstance(route, APIRoute) or hasattr(route, "methods") and route.methods:
            for method in sorted(route.methods - {"HEAD"} if len(route.methods) > 1 else route.methods):
                yield route, method, route.path
        else:
            yield route, "MOUNT", route.path


def install(app) -> None:
    """Rebuild `app`'s routes: POLICY's kept ones, MicrocalcAI's guarded and added ones."""
    ours = {(m, r.path) for r in router.routes for m in r.methods}
    kept = APIRouter()
    plain = []
    for route, method, path in list(_walk(app.router.routes)):
        status = POLICY.get((method, path), (None, ""))[0]
        if status is None:
            LOG.warning("route %s %s is not in the route policy; it is switched off", method, path)
        if status != KEPT or (method, path) in ours:
            continue
        if isinstance(route, APIRoute):
            kept.add_api_route(
                path,
                route.endpoint,
                methods=[method],
                response_class=route.response_class,
                include_in_schema=route.include_in_schema,
                summary=route.summary,
            )
        else:
            plain.append(route)
    app.router.routes[:] = plain
    app.include_router(kept)
    app.include_router(router)


def offered(app) -> dict[tuple[str, str], str]:
    """(method, path) -> status of the routes the app answers now (for tests and the docs)."""
    out = {}
    for _, method, path in _walk(app.router.routes):
        out[(method, path)] = POLICY.get((method, path), (ADDED, ""))[0]
    return out
