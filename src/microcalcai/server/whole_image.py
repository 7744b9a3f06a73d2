"""Whole-image models on the server: one mammogram view, or the views of one exam (a study).

Two kinds of model answer for a whole view, both through the library's own calls
(`models.tiles.score_whole_image` and `whole_image_saliency`, what `microcalcai predict`, the
BAC benchmark and tile training's evaluation call), so a served probability is the library's:
- a tile model (card `crop.task: tiles`, the `mobini2024` recipe's): every breast tile of the
  tile side in mm, cut at the image's own pixel size, scored and aggregated; it needs the pixel
  spacing (DICOM PixelSpacing / ImagerPixelSpacing, else `params.spacing_mm`);
- a model of the whole view (card `crop.task: whole_image`): the view padded to a square.
Both are asked the same way (/info/ `task: whole_image`, `scoring` says which). The finding is
breast arterial calcification (BAC): the card's positive class is reported as `bac`. The map is
Grad-CAM++ (Mobini et al.'s choice) over the whole image (a tile model's from its best tiles),
written as the ROI maps are (saliency_file.py) with the image's own geometry.

An exam aggregates its views' probabilities with `evaluate.exam.aggregate` (default `max`: BAC
in any breast makes the exam positive). Maps are per view (one file per answer is MONAI Label's
shape), so the exam answer names each view's image for a one-view request. docs/server-api.md.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from monailabel.interfaces.tasks.infer_v2 import InferTask, InferType

from microcalcai.errors import InputError, MicrocalcError
from microcalcai.evaluate.exam import AGGREGATIONS, aggregate
from microcalcai.models.tiles import (
    TileSettings,
    pixel_spacing,
    score_whole_image,
    tile_settings_of,
    whole_image_saliency,
)
from microcalcai.server.dicom_results import wants_dicom_out
from microcalcai.server.errors import NotFound, RequestError
from microcalcai.server.hosted import WHOLE_IMAGE_TASKS, ServedModels
from microcalcai.server.images import ImageCache, Source
from microcalcai.server.infer import hosted_info, load_source, saliency_choice, spacing_list
from microcalcai.server.saliency_file import write_saliency_nrrd
from microcalcai.server.views import EXAM_VIEWS, StudyIndex, check_study_uid, study_fields, view_of

TASK = "whole_image"
DEFAULT_SALIENCY = "gradcam++"
# finding -> (what it is called, (negative label, positive label)); the card's `crop.finding`
# names it, and a whole-image card without one is the BAC task (the only whole-image recipe).
FINDINGS = {"bac": ("breast arterial calcification", ("no_bac", "bac"))}
DEFAULT_FINDING = "bac"
DEFAULT_AGGREGATION = "max"


def is_whole_image(card) -> bool:
    return (getattr(card, "crop", None) or {}).get("task") in WHOLE_IMAGE_TASKS


def _exam_threshold(model: str, value, threshold: float) -> float:
    """`crop.exam_threshold`, the view threshold where the card leaves it out or null."""
    if value is None:
        return threshold
    try:
        if isinstance(value, bool):
            raise TypeError(value)
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if not 0.0 <= number <= 1.0:
        raise MicrocalcError(
            f"model {model}: crop.exam_threshold must be a probability within 0..1 (or null for the "
            f"model's threshold), got {value!r}; fix the model card's crop settings"
        )
    return number


@dataclass(frozen=True)
class WholeImageSettings:
    """What a whole-image card says about serving it."""

    finding: str
    finding_name: str
    labels: tuple[str, str]  # (negative, positive)
    image_size: int
    threshold: float
    aggregation: str
    exam_threshold: float
    tiles: TileSettings | None  # a tile model's tiling; None for a model of the whole view

    @classmethod
    def of(cls, card) -> WholeImageSettings:
        crop = dict(card.crop or {})
        finding = str(crop.get("finding") or DEFAULT_FINDING)
        if finding not in FINDINGS:
            raise MicrocalcError(
                f"model {card.name}: unknown whole-image finding {finding!r} (crop.finding); choose one of "
                f"{', '.join(sorted(FINDINGS))} in the model card's crop settings"
            )
        aggregation = str(crop.get("exam_aggregation") or DEFAULT_AGGREGATION)
        if aggregation not in AGGREGATIONS:
            raise MicrocalcError(
                f"model {card.name}: unknown exam aggregation {aggregation!r} (crop.exam_aggregation); "
                f"choose one of {', '.join(AGGREGATIONS)} in the model card's crop settings"
            )
        threshold = float(card.threshold)
        return cls(
            finding,
            FINDINGS[finding][0],
            FINDINGS[finding][1],
            int(crop.get("roi_size") or card.input_size),
            threshold,
            aggregation,
            _exam_threshold(card.name, crop.get("exam_threshold"), threshold),
            tile_settings_of(card),
        )

    @property
    def scoring(self) -> str:
        return "whole_image" if self.tiles is None else "tiles"

    def decision(self, probability: float, threshold: float | None = None) -> dict:
        threshold = self.threshold if threshold is None else threshold
        positive = probability >= threshold
        return {
            "probability": float(probability),
            "label": self.labels[1] if positive else self.labels[0],
            "decision": bool(positive),
            "threshold": float(threshold),
        }


def card_fields(card) -> dict:
    """The /info/ fields of a whole-image model (hosted.describe adds them to the card's)."""
    settings = WholeImageSettings.of(card)
    if settings.tiles is None:
        scoring = {"scoring": settings.scoring, "image_size": settings.image_size, "needs_spacing": False}
    else:
        scoring = {
            "scoring": settings.scoring,
            "tile_size_mm": settings.tiles.size_mm,
            "tile_stride": settings.tiles.stride,
            "tile_min_tissue": settings.tiles.min_tissue,
            "tile_aggregate": settings.tiles.aggregate,
            "needs_spacing": True,
        }
    return {
        "finding": settings.finding,
        "finding_name": settings.finding_name,
        **scoring,
        "default_saliency": DEFAULT_SALIENCY,
        "exam_aggregation": settings.aggregation,
        "exam_aggregations": list(AGGREGATIONS),
        "exam_threshold": settings.exam_threshold,
        "exam_views": list(EXAM_VIEWS),
    }


def exam_request(request: dict) -> str | None:
    """None for a one-view request; else the study to read: `params.study`, or "image" for the
    study of the request's image (`params.exam: true`). Types are checked here, for any model."""
    exam, study = request.get("exam"), request.get("study")
    if exam is not None and not isinstance(exam, bool):
        raise RequestError(f"params.exam must be true or false, got {exam!r}")
    if study is not None:
        return check_study_uid(study)
    return "image" if exam else None


def spacing_param(request: dict) -> float | None:
    """`params.spacing_mm`: the pixel size (mm) for images whose header gives none."""
    value = request.get("spacing_mm")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 10:
        raise RequestError(
            f"params.spacing_mm must be the pixel size in mm (a number, 0 < mm < 10), got {value!r}"
        )
    return float(value)


@dataclass
class ViewScore:
    probability: float
    members: dict
    saliency: np.ndarray | None  # (rows, cols) over the whole image
    spacing_mm: float | None  # the pixel size the tiles were cut at (None: not needed)
    spacing_source: str | None  # "image" (its header), "params" (params.spacing_mm) or None


class WholeImageTask(InferTask):
    def __init__(self, name: str, models: ServedModels, cache: ImageCache, studies: StudyIndex):
        self.name = name
        self.models = models
        self.cache = cache
        self.studies = studies
        settings = self.settings()
        super().__init__(
            type=InferType.CLASSIFICATION,
            labels={settings.labels[0]: 0, settings.labels[1]: 1},
            dimension=2,
            description=f"P({settings.finding_name}) of a whole mammogram view or exam (model {name!r}), "
            "with a whole-image Grad-CAM++ map",
        )

    def settings(self, served=None) -> WholeImageSettings:
        from microcalcai.models.artifact import read_card

        if served is not None:
            return WholeImageSettings.of(served.predictor.card)
        return WholeImageSettings.of(read_card(self.models.store.current_dir(self.name)))

    def is_valid(self) -> bool:
        return self.name in self.models.store.names()

    def info(self):
        out = super().info()
        out.update(hosted_info(self.models.store, self.name))
        return out

    # -- one view ------------------------------------------------------------------------------
    def __call__(self, request):
        """One view: `request` carries `source` (resolved by the app) and the client's params."""
        times: dict[str, float] = {"read": request.get("read_s", 0.0)}
        start = time.perf_counter()
        self._refuse_roi_params(request)
        source: Source = request["source"]
        view = view_of(source.mammogram, source.image_id, request.get("view"))
        method, target = saliency_choice(request, default=DEFAULT_SALIENCY, targets=self._targets())
        fallback_spacing = spacing_param(request)
        served = self.models.get(self.name)
        settings = self.settings(served)
        score = self.score(served, settings, source, fallback_spacing, method, times)
        answer = self._head(served, settings)
        answer.update(settings.decision(score.probability))
        answer.update(
            {
                "members": score.members,
                "member_versions": {},
                "prediction": [
                    {"idx": 0, "label": settings.labels[0], "score": 1.0 - score.probability},
                    {"idx": 1, "label": settings.labels[1], "score": score.probability},
                ],
                "roi": None,
                "view": view.as_json(),
                "study": study_fields(source.mammogram.metadata),
                "image": {**_image_fields(source), "spacing_source": score.spacing_source},
                "scoring": settings.scoring,
                "saliency": None,
            }
        )
        result_file = None
        if score.saliency is not None:
            tick = time.perf_counter()
            result_file, geometry = write_saliency_nrrd(
                score.saliency,
                None,  # the map lies pixel for pixel on the image: the identity geometry
                source_spacing_mm=source.mammogram.spacing_mm,
                model=self.name,
                method=method,
                image=source.image_id,
                probability=score.probability,
                extra={
                    "version": served.version,
                    "target": target,
                    "view": view.name,
                    "scoring": settings.scoring,
                },
            )
            times["write"] = time.perf_counter() - tick
            answer["saliency"] = {
                "method": method,
                "target": target,
                **geometry,
                "spacing_mm": spacing_list(source.mammogram.spacing_mm),
            }
        times["total"] = time.perf_counter() - start + times["read"]
        answer["latencies"] = {k: round(v, 5) for k, v in times.items()}
        return (str(result_file) if result_file else None), answer

    def _targets(self) -> tuple[str]:
        # the library's whole-view map is the positive class's (for a tile model, of its best
        # tiles): a "predicted" target would mean each tile's own class, which says nothing here
        return (self.settings().labels[1],)

    def _refuse_roi_params(self, request: dict) -> None:
        if request.get("roi") is not None:
            raise RequestError(
                f"model {self.name!r} classifies whole mammogram views: send no params.roi "
                "(GET /info/ says task: whole_image); ROI models take an ROI"
            )
        if wants_dicom_out(request):
            raise RequestError(
                f"params.dicom_out is not offered for whole-image models such as {self.name!r}; "
                "send the request without it"
            )

    def score(self, served, settings, source: Source, fallback_spacing, method, times: dict) -> ViewScore:
        """P(finding) of one view, as `microcalcai predict` scores it, and its map over the image."""
        spacing, spacing_source = self._spacing(settings, source, fallback_spacing)
        pixels = source.mammogram.pixels
        tick = time.perf_counter()
        with served.lock:
            try:
                scored = score_whole_image(served.predictor, pixels, spacing)
            except InputError as exc:  # e.g. an image smaller than one tile
                raise RequestError(f"image {source.image_id!r}: {exc}") from None
            times["predict"] = time.perf_counter() - tick
            saliency = None
            if method:
                tick = time.perf_counter()
                try:
                    saliency = whole_image_saliency(
                        served.predictor, pixels, spacing, method=method, scored=scored
                    )
                except MicrocalcError as exc:
                    raise RequestError(f"params.saliency: {exc}") from None
                times["saliency"] = time.perf_counter() - tick
        members = {served.predictor.name: scored.score}
        return ViewScore(scored.score, members, saliency, spacing, spacing_source)

    def _spacing(self, settings, source: Source, fallback: float | None) -> tuple[float | None, str | None]:
        """The pixel size a tile model cuts its tiles at: the image's own (DICOM PixelSpacing or
        ImagerPixelSpacing), else `params.spacing_mm`; a model of the whole view needs none."""
        if settings.tiles is None:
            return None, None
        if source.mammogram.spacing_mm is not None:
            return pixel_spacing(source.mammogram), "image"
        if fallback is not None:
            return fallback, "params"
        raise RequestError(
            f"image {source.image_id!r} gives no pixel spacing (no DICOM PixelSpacing or "
            "ImagerPixelSpacing), "
            f"and model {self.name!r} scores tiles of {settings.tiles.size_mm:g} mm: send its pixel size as "
            'params.spacing_mm (e.g. {"spacing_mm": 0.1}), or store the view as DICOM with its spacing'
        )

    def _head(self, served, settings) -> dict:
        return {
            "model": self.name,
            "version": served.version,
            "task": TASK,
            "finding": settings.finding,
            "finding_name": settings.finding_name,
            "demonstration": bool(served.card.get("demonstration")),
        }

    # -- an exam -------------------------------------------------------------------------------
    def exam(self, request: dict, study: str):
        """The views of one study scored and aggregated (JSON only; maps come per view)."""
        start = time.perf_counter()
        self._refuse_roi_params(request)
        if request.get("output") == "image":
            raise RequestError(
                "an exam answer is JSON (output=json or all); ask each view's map with image=ID "
                "(the ids are in the exam answer's views)"
            )
        if request.get("saliency") not in (None, False, "", "none", "false"):
            raise RequestError(
                "an exam answer carries no map: send no params.saliency with params.exam/params.study, "
                "and ask each view's map with a one-view request (image=ID)"
            )
        how = request.get("aggregation")
        fallback_spacing = spacing_param(request)
        served = self.models.get(self.name)
        settings = self.settings(served)
        how = settings.aggregation if how is None else how
        if how not in AGGREGATIONS:
            raise RequestError(f"params.aggregation must be one of {', '.join(AGGREGATIONS)}, got {how!r}")
        if study == "image":
            source: Source = request["source"]
            study = source.mammogram.metadata.get("study_instance_uid")
            if not study:
                raise RequestError(
                    f"image {source.image_id!r} names no StudyInstanceUID, so its exam cannot be found; "
                    "send params.study, or classify its views one by one"
                )
        datastore = request["datastore"]
        tick = time.perf_counter()
        entries = self.studies.images_of(datastore, study)
        times = {"find": time.perf_counter() - tick}
        views, skipped, first = [], [], {}
        tick = time.perf_counter()
        for entry in entries:
            try:
                source = load_source({"image": entry.image_id}, datastore, self.cache, uploaded=False)
                view = view_of(source.mammogram, entry.image_id, in_exam=True)
                score = self.score(served, settings, source, fallback_spacing, None, {})
            except RequestError as exc:  # not a view, not decodable, or no spacing for a tile model
                skipped.append({"image": entry.image_id, "reason": str(exc)})
                continue
            first = first or study_fields(source.mammogram.metadata)
            rows, cols = source.shape
            views.append(
                {
                    "name": view.name,
                    "laterality": view.laterality,
                    "view_position": view.position,
                    "image": entry.image_id,
                    **settings.decision(score.probability),
                    "rows": int(rows),
                    "cols": int(cols),
                    "spacing_mm": spacing_list(source.mammogram.spacing_mm),
                    "spacing_source": score.spacing_source,
                }
            )
        times["views"] = time.perf_counter() - tick
        if not views:
            reasons = "; ".join(f"{s['image']}: {s['reason']}" for s in skipped)
            raise NotFound(f"study {study} has no CC/MLO view that reads ({reasons})")
        views.sort(key=lambda v: (EXAM_VIEWS.index(v["name"]), v["image"]))
        present = {v["name"] for v in views}
        missing = [name for name in EXAM_VIEWS if name not in present]
        probability = aggregate(np.array([v["probability"] for v in views]), how)
        answer = self._head(served, settings)
        answer.update(
            {
                "roi": None,
                "scoring": settings.scoring,
                "exam": {
                    **first,
                    "study_uid": study,
                    **settings.decision(probability, settings.exam_threshold),
                    "aggregation": how,
                    "views_scored": len(views),
                    "complete": not missing,
                    "missing_views": missing,
                },
                "views": views,
                "missing_views": missing,
                "skipped": skipped,
            }
        )
        times["total"] = time.perf_counter() - start
        answer["latencies"] = {k: round(v, 5) for k, v in times.items()}
        return None, answer


def _image_fields(source: Source) -> dict:
    rows, cols = source.shape
    return {
        "id": source.image_id,
        "rows": int(rows),
        "cols": int(cols),
        "spacing_mm": spacing_list(source.mammogram.spacing_mm),
    }
