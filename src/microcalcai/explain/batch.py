"""Explain ROIs of mammogram files and write every output: what `microcalcai explain` runs.

Each image is read once; its ROIs are cut with `microcalcai.roi.crop_roi`, explained in one batch,
and written as ``<name>.nrrd`` (geometry on the source's stored pixel grid), ``<name>.npy``,
``<name>_overlay.png`` (crop + map + colour bar, the probability in the title),
``<name>_context.png`` (the map pasted onto the whole mammogram) and, for an ensemble,
``<name>_members.png`` (each member's map beside their mean). With calcification masks (a manifest's
``mask_path``, e.g. the phantom's) the pointing game and the share of saliency inside the mask are
computed per ROI. ``summary.csv``, ``saliency.json`` and ``montage.png`` cover all ROIs.
"""

from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from microcalcai_logic.contract import PixelRoi, decision_label

from microcalcai.atomic import atomic_write_text
from microcalcai.errors import InputError

log = logging.getLogger(__name__)
MONTAGE_MAX = 48  # ROIs shown in montage.png; a page of hundreds of thumbnails helps no one


@dataclass
class RoiRequest:
    """One ROI to explain: centre in the stored pixels of ``image_path``, side in pixels."""

    name: str
    image_path: Path
    center_xy: tuple[float, float]
    size_px: int
    mask_path: Path | None = None
    label: str = ""


def safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(text)).strip("._") or "roi"


def requests_from_manifest(frame, default_size: int) -> list[RoiRequest]:
    """One request per manifest row (``read_manifest`` output: absolute paths)."""
    requests, seen = [], set()
    for index, row in frame.reset_index(drop=True).iterrows():
        base = row.get("roi_id") if isinstance(row.get("roi_id"), str) and row.get("roi_id") else None
        if base is None:
            image_id = (
                row.get("image_id") if isinstance(row.get("image_id"), str) else Path(row["image_path"]).stem
            )
            base = f"{image_id}_r{index}"
        name = safe_name(base)
        if name in seen:
            name = f"{name}_r{index}"
        seen.add(name)
        size = _positive_int(row.get("roi_size"), default_size)
        mask = row.get("mask_path")
        label = row.get("label")
        requests.append(
            RoiRequest(
                name,
                Path(row["image_path"]),
                (float(row["roi_x"]), float(row["roi_y"])),
                size,
                Path(mask) if isinstance(mask, str) and mask else None,
                label if isinstance(label, str) else "",
            )
        )
    return requests


def _positive_int(value, default: int) -> int:
    try:
        number = int(round(float(value)))
    except (TypeError, ValueError):  # empty cell (NaN rounds to an error too)
        return default
    return number if number > 0 else default


def explain_requests(
    predictor,
    requests: list[RoiRequest],
    out_dir,
    *,
    method: str = "gradcam",
    target: str = "malignant",
    layer: str | None = None,
    nrrd_units: str = "pixel",
    context: bool = True,
    progress: bool = True,
    tolerance_px: float = 15.0,
    dicom_out: Path | None = None,
) -> list[dict]:
    """Explain every request, write the files into ``out_dir``; returns one summary row per ROI.

    With ``dicom_out``, each ROI also gets its DICOM SR and saliency SEG there (dicom_out package);
    a ROI whose image cannot be referenced gets ``dicom_error`` in its row instead.
    """
    from tqdm.auto import tqdm

    from microcalcai.explain.methods import get_method

    spec = get_method(method)  # a bad name fails before any image is read
    names = [r.name for r in requests]
    if len(set(names)) != len(names):
        raise InputError(
            "two ROIs would write the same files: "
            + ", ".join(sorted({n for n in names if names.count(n) > 1}))
        )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    earlier = _result_files(out_dir)
    by_image: dict[Path, list[RoiRequest]] = {}
    for request in requests:
        by_image.setdefault(request.image_path, []).append(request)
    rows, thumbnails = [], []
    started = time.perf_counter()
    with tqdm(total=len(requests), desc=f"explain ({spec.title})", unit="ROI", disable=not progress) as bar:
        for image_path, group in by_image.items():
            image = _read(image_path)
            for size in sorted({r.size_px for r in group}):  # one batch per ROI size
                batch = [r for r in group if r.size_px == size]
                rows += _explain_group(
                    predictor,
                    image,
                    batch,
                    out_dir,
                    spec,
                    target,
                    layer,
                    nrrd_units,
                    context,
                    tolerance_px,
                    thumbnails,
                    dicom_out,
                )
                bar.update(len(batch))
    order = {request.name: index for index, request in enumerate(requests)}
    rows.sort(key=lambda row: order[row["name"]])  # batches go by image and size; report in request order
    _write_summary(out_dir, rows, thumbnails, spec, predictor, time.perf_counter() - started)
    # Only now, with this run's files and summary in place: an earlier run's maps this run did
    # not make again go, so the folder holds one result, and a failed run leaves the old one.
    for name in earlier - _result_files(out_dir):
        (out_dir / name).unlink(missing_ok=True)
    return rows


def _result_files(out_dir: Path) -> set[str]:
    """The map files a run's summary.csv lists in `out_dir` (empty when it has none). DICOM
    results are not among them: each run's objects are new ones, kept beside the earlier."""
    import pandas as pd

    summary = out_dir / "summary.csv"
    if not summary.is_file():
        return set()
    try:
        table = pd.read_csv(summary, dtype=str, keep_default_na=False)
    except Exception:  # not a summary this package wrote: claim nothing in the folder
        return set()
    names = {
        cell
        for column in table.columns
        if column.startswith("file_") and column != "file_dicom"
        for cell in table[column]
        if cell
    }
    # plain names in this folder only: a summary edited to hold paths claims nothing
    return {name for name in names if Path(name).name == name}


def _read(path: Path):
    from microcalcai.io import read_image

    try:
        return read_image(path)
    except InputError:
        raise
    except Exception as exc:  # a reader's own failure: say which file
        raise InputError(f"cannot read image {path}: {exc}") from exc


def _explain_group(
    predictor,
    image,
    batch,
    out_dir,
    spec,
    target,
    layer,
    nrrd_units,
    context,
    tolerance_px,
    thumbnails,
    dicom_out,
) -> list[dict]:
    from microcalcai.explain.outputs import (
        MapGeometry,
        overlay_title,
        write_map_npy,
        write_map_nrrd,
        write_montage_png,
        write_overlay_png,
    )
    from microcalcai.explain.saliency import explain_crops
    from microcalcai.roi import crop_roi

    crops = [crop_roi(image, r.center_xy, size_px=r.size_px) for r in batch]
    result = explain_crops(predictor, crops, method=spec.name, target=target, layer=layer)
    model_name = getattr(predictor, "name", type(predictor).__name__)
    rows = []
    for k, (request, crop) in enumerate(zip(batch, crops, strict=True)):
        saliency = result.maps[k]
        probability = float(result.probability[k])
        explained = result.class_names[k]
        title = overlay_title(probability, spec.title, model_name, explained, result.threshold)
        stem = out_dir / request.name
        geometry = MapGeometry.of(crop, image.spacing_mm)
        files = {
            "nrrd": write_map_nrrd(
                stem.with_suffix(".nrrd"),
                saliency,
                geometry,
                units=nrrd_units,
                model=model_name,
                method=spec.name,
                probability=probability,
                image=request.image_path.name,
            ),
            "npy": write_map_npy(stem.with_suffix(".npy"), saliency),
            "overlay": write_overlay_png(
                out_dir / f"{request.name}_overlay.png", crop, saliency, title=title
            ),
        }
        if context:
            files["context"] = _write_context(
                out_dir / f"{request.name}_context.png", image, crop, saliency, title
            )
        if len(result.member_maps) > 1:
            items = [
                {
                    "crop": crop,
                    "saliency": maps[k],
                    "title": f"{name}\nP = {result.member_probability[name][k]:.3f}",
                }
                for name, maps in result.member_maps.items()
            ]
            items.append(
                {"crop": crop, "saliency": saliency, "title": f"mean of members\nP = {probability:.3f}"}
            )
            files["members"] = write_montage_png(
                out_dir / f"{request.name}_members.png",
                items,
                columns=len(items),
                suptitle=f"{spec.title} for {explained}",
            )
        row = {
            "name": request.name,
            "image_path": str(request.image_path),
            "roi_x": request.center_xy[0],
            "roi_y": request.center_xy[1],
            "roi_size": request.size_px,
            "label": request.label,
            "probability": round(probability, 6),
            "threshold": result.threshold,
            "decision": "" if result.threshold is None else decision_label(probability >= result.threshold),
            "explained": explained,
            "method": spec.name,
            "target": target,
            "layers": ";".join(f"{n}:{v}" for n, v in result.layers.items()),
            "origin_x": geometry.origin_xy[0],
            "origin_y": geometry.origin_xy[1],
            **_localisation(request, image, crop, saliency, tolerance_px),
            **{f"file_{kind}": Path(path).name for kind, path in files.items()},
        }
        if dicom_out is not None:
            explained_by = (spec, target, saliency, crop)
            row.update(_dicom_results(dicom_out, request, predictor, probability, result, k, explained_by))
        rows.append(row)
        if len(thumbnails) < MONTAGE_MAX:
            label = f" [{request.label}]" if request.label else ""
            thumbnails.append(
                {"crop": crop, "saliency": saliency, "title": f"{request.name}{label}\nP = {probability:.3f}"}
            )
    return rows


def _localisation(request: RoiRequest, image, crop, saliency, tolerance_px) -> dict:
    """Pointing game and energy in the mask for a ROI with a calcification mask (empty otherwise)."""
    from microcalcai.explain.faithfulness import energy_in_mask, pointing_game
    from microcalcai.io.image import Mammogram
    from microcalcai.roi import crop_roi

    empty = {"pointing_hit": "", "energy_in_mask": "", "mask_area_share": ""}
    if request.mask_path is None:
        return empty
    from PIL import Image

    try:
        labels = np.asarray(Image.open(request.mask_path))
    except Exception as exc:
        raise InputError(f"cannot read mask {request.mask_path} of ROI {request.name}: {exc}") from exc
    if labels.shape[:2] != image.shape:
        raise InputError(
            f"mask {request.mask_path} is {labels.shape[:2]}, its image {image.shape}; "
            "a mask must have its image's rows and columns"
        )
    holder = Mammogram(
        pixels=(labels.reshape(labels.shape[:2]) > 0).astype(np.float32),
        spacing_mm=image.spacing_mm,
        to_stored=image.to_stored,
    )
    mask = crop_roi(holder, request.center_xy, size_px=crop.size_px).pixels > 0.5
    if not mask.any():
        return empty  # a negative ROI: nothing to point at
    return {
        "pointing_hit": int(pointing_game(saliency, mask, tolerance_px=tolerance_px)),
        "energy_in_mask": round(energy_in_mask(saliency, mask), 6),
        "mask_area_share": round(float(mask.mean()), 6),
    }


def _write_context(path, image, crop, saliency, title) -> Path:
    """The whole mammogram (shrunk to at most 1024 px a side for display) with the map pasted on it."""
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    from microcalcai.explain.outputs import add_colorbar, save_figure

    rows, cols = image.shape
    step = max(1, int(np.ceil(max(rows, cols) / 1024)))
    pasted = crop.paste(saliency, (rows, cols))[::step, ::step]
    fig = Figure(figsize=(5.0, 5.0 * rows / cols + 0.6))
    ax = fig.add_subplot(1, 1, 1)
    ax.imshow(image.pixels[::step, ::step], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.imshow(np.ma.masked_invalid(pasted), cmap="jet", vmin=0, vmax=1, alpha=0.5, interpolation="nearest")
    (x0, y0), (x1, y1) = (
        crop.crop_to_source(-0.5, -0.5),
        crop.crop_to_source(crop.size_px - 0.5, crop.size_px - 0.5),
    )
    ax.add_patch(
        Rectangle(
            (min(x0, x1) / step, min(y0, y1) / step),
            abs(x1 - x0) / step,
            abs(y1 - y0) / step,
            fill=False,
            edgecolor="yellow",
            linewidth=1.0,
        )
    )
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=8)
    add_colorbar(fig, ax)
    return save_figure(fig, path, 110)


def _write_summary(out_dir: Path, rows: list[dict], thumbnails: list[dict], spec, predictor, seconds: float):
    import pandas as pd

    from microcalcai.explain.outputs import write_montage_png

    atomic_write_text(out_dir / "summary.csv", pd.DataFrame(rows).to_csv(index=False))
    scored = [r for r in rows if r["pointing_hit"] != ""]
    summary = {
        "method": spec.name,
        "method_title": spec.title,
        "reference": spec.reference,
        "model": getattr(predictor, "name", type(predictor).__name__),
        "rois": len(rows),
        "seconds": round(seconds, 3),
        "pointing_game": float(np.mean([r["pointing_hit"] for r in scored])) if scored else None,
        "energy_in_mask": float(np.mean([r["energy_in_mask"] for r in scored])) if scored else None,
        "mask_area_share": float(np.mean([r["mask_area_share"] for r in scored])) if scored else None,
        "geometry": "NRRD space origin/directions on the source's stored pixel grid (docs/explain.md)",
        "roi": rows,
    }
    atomic_write_text(out_dir / "saliency.json", json.dumps(summary, indent=2, default=str) + "\n")
    if thumbnails:
        write_montage_png(
            out_dir / "montage.png",
            thumbnails,
            suptitle=f"{spec.title}, {summary['model']} ({len(rows)} ROIs"
            + (f", first {len(thumbnails)} shown)" if len(rows) > len(thumbnails) else ")"),
        )


def _dicom_results(folder, request, predictor, probability, result, k, explained_by) -> dict:
    from microcalcai.dicom_out.results import write_roi_results

    spec, target, saliency, crop = explained_by
    members = {name: float(values[k]) for name, values in result.member_probability.items()}
    try:
        paths = write_roi_results(
            folder,
            request.image_path,
            PixelRoi(request.center_xy[0], request.center_xy[1], request.size_px),
            predictor,
            probability,
            members,
            saliency,
            crop=crop,
            method=spec.name,
            target=target,
        )
    except InputError as exc:
        return {"dicom_error": str(exc)}
    return {"file_dicom": ";".join(str(Path(p).relative_to(folder)) for p in paths)}
