"""One MONAI Label infer task per hosted model, plus `ensemble`: 2D ROI classification.

Each answers the JSON of docs/server-api.md and, when asked, a saliency NRRD placed over the
ROI. The work itself is the library's: `crop_roi`, `Predictor.predict`, `saliency_map`.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from microcalcai_logic.contract import DEFAULT_ROI_SIZE, LABEL_INDEX, MAX_ROI_SIZE, PixelRoi, decision_label
from monailabel.interfaces.tasks.infer_v2 import InferTask, InferType

from microcalcai.errors import MicrocalcError
from microcalcai.server.dicom_results import store_results, wants_dicom_out
from microcalcai.server.errors import RequestError
from microcalcai.server.hosted import ENSEMBLE, ServedModels, describe
from microcalcai.server.images import ImageCache, Source, datastore_image_path
from microcalcai.server.saliency_file import crop_geometry, write_saliency_nrrd
from microcalcai.server.validation import check_roi_inside, parse_roi

DEFAULT_SALIENCY = "gradcam"
SALIENCY_TARGETS = ("malignant", "predicted")


def saliency_methods() -> list[str]:
    from microcalcai.explain.methods import METHODS

    return list(METHODS)


class ClassifyTask(InferTask):
    def __init__(self, name: str, models: ServedModels, cache: ImageCache):
        self.name = name
        self.models = models
        self.cache = cache
        kind = "ensemble of the hosted models" if name == ENSEMBLE else "model"
        super().__init__(
            type=InferType.CLASSIFICATION,
            labels=dict(LABEL_INDEX),
            dimension=2,
            description=f"P(malignant) of a microcalcification ROI ({kind} {name!r}), with a saliency map",
        )

    def is_valid(self) -> bool:
        return self.name in self.models.store.names()

    def info(self):
        out = super().info()
        out.update(hosted_info(self.models.store, self.name))
        out["default_roi_size"] = DEFAULT_ROI_SIZE
        return out

    def __call__(self, request):
        """`request` carries `image` (resolved by the app), `source` and the client's params."""
        times: dict[str, float] = {}
        start = time.perf_counter()
        source: Source = request["source"]
        roi = request_roi(request, source)
        times["read"] = request.get("read_s", 0.0)

        tick = time.perf_counter()
        crop = make_crop(source, roi)
        times["crop"] = time.perf_counter() - tick

        method, target = saliency_choice(request)
        served = self.models.get(self.name)
        with served.lock:
            tick = time.perf_counter()
            saliency = None
            if method:
                # One pass gives the map and the probability it explains (no separate predict).
                from microcalcai.explain.saliency import explain_crops

                try:
                    result = explain_crops(served.predictor, [crop], method=method, target=target)
                except MicrocalcError as exc:
                    raise RequestError(f"params.saliency: {exc}") from None
                saliency = result.maps[0]
                probability, members = result.probability[0], result.member_probability
                times["predict+saliency"] = time.perf_counter() - tick
            else:
                batch = served.predictor.predict(crop.pixels[None].astype(np.float32))
                probability, members = batch.probability[0], batch.members
                times["predict"] = time.perf_counter() - tick

        answer = answer_json(self.name, served, float(probability), members, roi, source)
        if wants_dicom_out(request):
            tick = time.perf_counter()
            store_results(request, answer, served, saliency, crop, method, target)
            times["dicom_out"] = time.perf_counter() - tick
        result_file = None
        if saliency is not None:
            tick = time.perf_counter()
            result_file, geometry = write_saliency_nrrd(
                saliency,
                crop,
                source_spacing_mm=source.mammogram.spacing_mm,
                model=self.name,
                method=method,
                image=source.image_id,
                probability=answer["probability"],
                extra={"version": served.version, "target": target},
            )
            times["write"] = time.perf_counter() - tick
            answer["saliency"] = {
                "method": method,
                "target": target,
                **geometry,
                "spacing_mm": spacing_list(source.mammogram.spacing_mm),
            }
        else:
            origin, step = crop_geometry(crop)
            answer["saliency"] = None
            answer["crop"] = {"origin_xy": list(origin), "step_xy": list(step)}
        times["total"] = time.perf_counter() - start + times["read"]
        answer["latencies"] = {k: round(v, 5) for k, v in times.items()}
        return (str(result_file) if result_file else None), answer


def hosted_info(store, name: str) -> dict:
    """What /info/ says of a hosted model beyond MONAI Label's task fields (its card, versions)."""
    version = store.current_version(name)
    return {
        **describe(store.version_dir(name, version)),
        "name": name,
        "version": version,
        "versions": store.versions(name),
        "saliency_methods": saliency_methods(),
    }


def request_roi(request: dict, source: Source) -> PixelRoi:
    rows, cols = source.shape
    if request.get("roi") is not None:
        roi = parse_roi(request["roi"])
    elif request.get("uploaded"):
        # An uploaded crop is itself the ROI: centred on its middle, as large as its longer side.
        roi = PixelRoi((cols - 1) / 2.0, (rows - 1) / 2.0, max(rows, cols))
        if roi.size > MAX_ROI_SIZE:
            raise RequestError(
                f"{source.image_id}: an upload without params.roi is taken as the ROI crop, "
                f"but it is {cols} x {rows} pixels; send params.roi to classify part of it"
            )
    else:
        raise RequestError(
            'params.roi is required with a datastore image, e.g. params={"roi": '
            '{"x": 1200, "y": 900, "size": 512}} (stored pixels, x = column, y = row)'
        )
    check_roi_inside(roi, rows, cols, image=source.image_id)
    return roi


def make_crop(source: Source, roi: PixelRoi):
    from microcalcai.roi import crop_roi

    try:
        return crop_roi(source.mammogram, (roi.x, roi.y), size_px=roi.size)
    except MicrocalcError as exc:
        raise RequestError(f"params.roi: {exc}") from None


def saliency_choice(
    request: dict, *, default: str = DEFAULT_SALIENCY, targets=SALIENCY_TARGETS
) -> tuple[str | None, str]:
    """(method or None, target) from params.saliency and params.saliency_target (the first of
    `targets` by default)."""
    value = request.get("saliency", default)
    if request.get("output") == "json" and "saliency" not in request:
        value = None  # nobody would receive the map
    if value in (None, False, "", "none", "false"):
        return None, targets[0]
    if not isinstance(value, str):
        raise RequestError(f"params.saliency must be a method name or false, got {value!r}")
    from microcalcai.explain.methods import get_method

    try:
        method = get_method(value).name
    except MicrocalcError as exc:
        raise RequestError(f"params.saliency: {exc}") from None
    target = request.get("saliency_target", targets[0])
    if target not in targets:
        raise RequestError(f"params.saliency_target must be one of {list(targets)}, got {target!r}")
    return method, target


def answer_json(name: str, served, probability: float, members: dict, roi: PixelRoi, source: Source) -> dict:
    threshold = float(served.card["threshold"])
    malignant = probability >= threshold
    members = {str(k): float(np.asarray(v).reshape(-1)[0]) for k, v in (members or {}).items()} or {
        name: probability
    }
    member_versions = {}
    if served.card.get("kind") == "ensemble":
        member_versions = served.card.get("member_versions", {})
    rows, cols = source.shape
    return {
        "model": name,
        "version": served.version,
        "probability": probability,
        "label": decision_label(malignant),
        "decision": bool(malignant),
        "threshold": threshold,
        "members": members,
        "member_versions": member_versions,
        "prediction": [
            {"idx": LABEL_INDEX["benign"], "label": "benign", "score": 1.0 - probability},
            {"idx": LABEL_INDEX["malignant"], "label": "malignant", "score": probability},
        ],
        "roi": roi.as_params(),
        "image": {
            "id": source.image_id,
            "rows": int(rows),
            "cols": int(cols),
            "spacing_mm": spacing_list(source.mammogram.spacing_mm),
        },
    }


def spacing_list(spacing):
    return None if spacing is None else [float(s) for s in spacing]


def load_source(request: dict, datastore, cache: ImageCache, *, uploaded: bool) -> Source:
    """The image a request names, read through the cache; sets `read_s` in the request."""
    tick = time.perf_counter()
    if uploaded:
        path = Path(request["image"])
        name = request.get("upload_name") or f"upload {path.name!r}"
    else:
        path = datastore_image_path(datastore, request["image"])
        name = request["image"]
    mammogram = cache.read(path, name=name, keep=not uploaded)  # an upload is removed after the request
    request["read_s"] = time.perf_counter() - tick
    return Source(name if uploaded else request["image"], path, mammogram)
