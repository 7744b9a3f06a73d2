"""Small studies and tiny models for the server tests (fast on 2 CPU cores).

Studies: real DICOM MG files written with the project's writer (bright calcification-like dots
on a textured background), one PNG, a manifest.csv with ROIs and labels, and one of the real
CBIS-DDSM mammograms. Models: two tf_efficientnet_lite0 networks at a 64-pixel input with
random weights saved as project model folders, and their ensemble.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

ROWS, COLS = 320, 256
ROI_SIZE = 96
INPUT_SIZE = 64


def synthetic_mammogram(seed: int, malignant: bool) -> tuple[np.ndarray, tuple[int, int]]:
    """uint16 (ROWS, COLS) image with a cluster of bright dots; returns it and the cluster centre."""
    rng = np.random.default_rng(seed)
    from scipy.ndimage import gaussian_filter

    background = gaussian_filter(rng.normal(size=(ROWS, COLS)), 6)
    background = (background - background.min()) / np.ptp(background)
    image = 0.25 + 0.35 * background
    cy, cx = int(rng.integers(100, ROWS - 100)), int(rng.integers(80, COLS - 80))
    count = 12 if malignant else 5
    for _ in range(count):
        y, x = cy + int(rng.integers(-20, 21)), cx + int(rng.integers(-20, 21))
        radius = 1 if malignant else 3
        image[max(y - radius, 0) : y + radius + 1, max(x - radius, 0) : x + radius + 1] = 0.95
    return (np.clip(image, 0, 1) * 4095).astype(np.uint16), (cx, cy)


def write_studies(folder: Path, real_dicom: Path | None) -> dict:
    """DICOM studies for 4 patients x 2 views, a PNG, a manifest, optionally a real CBIS-DDSM file."""
    from PIL import Image

    from microcalcai.io import write_mg_dicom

    folder.mkdir(parents=True, exist_ok=True)
    rows = ["patient_id,image_path,roi_x,roi_y,roi_size,label,finding"]
    ids = []
    for patient in range(4):
        for view_index, (laterality, view) in enumerate((("L", "CC"), ("R", "MLO"))):
            malignant = (patient + view_index) % 2 == 1
            pixels, (cx, cy) = synthetic_mammogram(10 * patient + view_index, malignant)
            name = f"P{patient}_{laterality}_{view}"
            write_mg_dicom(
                folder / f"{name}.dcm",
                pixels,
                spacing_mm=(0.07, 0.07),
                laterality=laterality,
                view=view,
                patient_id=f"P{patient}",
                bits_stored=12,
            )
            label = "malignant" if malignant else "benign"
            rows.append(f"P{patient},{name}.dcm,{cx},{cy},{ROI_SIZE},{label},calcification")
            ids.append(name)
    pixels, _ = synthetic_mammogram(99, False)
    Image.fromarray((pixels >> 4).astype(np.uint8)).save(folder / "extra_png.png")
    ids.append("extra_png")
    (folder / "manifest.csv").write_text("\n".join(rows) + "\n")
    if real_dicom is not None:
        shutil.copy(real_dicom, folder / "cbis_real.dcm")
        ids.append("cbis_real")
    return {"ids": ids}


def tiny_model(out: Path, name: str, seed: int, voting: bool = False) -> Path:
    """A random-weight tf_efficientnet_lite0 model folder with a fixed 0.5 threshold.

    With `voting`, its head votes 'malignant' with every feature channel (small positive weights
    for malignant, the same negative for benign), so Grad-CAM for 'malignant' weighs every channel
    positively and the map shows where the features fire; a head drawn at random (the registry's
    near-zero initialisation) often gives an all-zero map, which an overlay test cannot look at.
    """
    import torch

    from microcalcai.models.artifact import card_for, save_model
    from microcalcai.models.registry import create_model

    torch.manual_seed(seed)
    module = create_model("tf_efficientnet_lite0", weights="none")
    if voting:
        head = module.get_classifier()
        with torch.no_grad():
            votes = 1e-3 * torch.rand_like(head.weight[1])
            head.weight[1], head.weight[0] = votes, -votes
    card = card_for(
        "tf_efficientnet_lite0",
        name=name,
        input_size=INPUT_SIZE,
        threshold=0.5,
        threshold_method="fixed 0.5 (test model)",
    )
    return save_model(module.eval(), card, out / name)


def host_tiny_models(workspace: Path, scratch: Path, voting: bool = False) -> list[str]:
    """Two tiny models ("tiny-a", "tiny-b") and their ensemble, hosted in `workspace`; "tiny-a"
    is marked as a demonstration model, as the default models are, "tiny-b" is not."""
    from microcalcai.server.bootstrap import mark_demonstration
    from microcalcai.server.workspace import build_ensemble, install_model, prepare_app

    prepare_app(workspace)
    folders = [
        tiny_model(scratch, name, seed, voting=voting) for seed, name in enumerate(("tiny-a", "tiny-b"))
    ]
    mark_demonstration(folders[0])
    names = [install_model(workspace, folder) for folder in folders]
    build_ensemble(workspace, threshold=0.5, threshold_method="fixed 0.5 (test ensemble)")
    return names


def studies_pool(folder: Path, store_folder: Path | None = None):
    """A studies folder's datastore and candidate pool, wired as the server wires them (masks kept
    in `store_folder` when given)."""
    from microcalcai.server.app import UploadableStudies
    from microcalcai.server.images import ImageCache, ScreenedDatastore
    from microcalcai.server.launch import FILE_EXTENSIONS
    from microcalcai.server.pool import CandidatePool

    store = UploadableStudies(str(folder), extensions=FILE_EXTENSIONS, auto_reload=False)
    cache = ImageCache()
    return store, CandidatePool(ScreenedDatastore(store, cache), cache, store_folder)


def synth_workers() -> int:
    """Phantom worker processes for a benchmark's data: every CPU but one, at most 8."""
    return max(1, min(8, (os.cpu_count() or 1) - 1))


def spot_phantom(
    out: Path,
    *,
    patients: int,
    seed: int,
    progress: bool = False,
    spacing_mm: float = 0.1,
    roi_size: int = 96,
    **options,
):
    """Phantom spot views (CC, one breast), by default at 0.1 mm with 96-pixel ROIs: seconds to make."""
    from microcalcai.phantom import generate_dataset

    return generate_dataset(
        out,
        patients=patients,
        seed=seed,
        spacing_mm=spacing_mm,
        roi_size=roi_size,
        full_field=False,
        views=("CC",),
        bilateral=False,
        progress=progress,
        **options,
    )


def trained_spot_model(scratch: Path, name: str = "spotter", seed: int = 5) -> Path:
    """A tf_efficientnet_lite0 trained here, in about a minute on 2 cores, to find calcifications.

    The project's own training pipeline (recipe defaults: offline ImageNet weights, Adam, flips and
    rotations) fine-tunes it for 3 epochs on phantom spot views at 0.1 mm: 96-pixel ROIs over a
    calcification cluster are its 'malignant' class, normal-tissue ROIs its 'benign' one. So its
    Grad-CAM for 'malignant' must fall on calcifications, which a random-weight model's does not:
    tests of where a saliency peak lands need such a model. Input 192 px, so the last block's map
    is 6 x 6 over the ROI. Returns the model folder (validation AUC in its card).
    """
    import csv

    from microcalcai.train.recipes import load_recipe
    from microcalcai.train.run import train_recipe

    phantom = spot_phantom(scratch / "spot-training", patients=40, seed=seed, negatives=True)
    rows = list(csv.DictReader(phantom.manifest_path.open()))
    manifest = phantom.out_dir / "calcification-vs-normal.csv"
    with manifest.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        for row in rows:
            present = row["finding"] == "calcification"
            writer.writerow(
                {**row, "label": "malignant" if present else "benign", "finding": "calcification"}
            )
    recipe = load_recipe(
        "defaults",
        [
            f"name={name}",
            "input_size=192",
            "epochs=3",
            "batch_size=16",
            "optimizer.lr=1e-3",
            f"seed={seed}",
            "split.val=0.2",
            "split.test=0.0",
        ],
    )
    summary = train_recipe(recipe, manifest, scratch / "spot-run", progress=False, resume=False)
    return Path(summary["archs"]["tf_efficientnet_lite0"]["model_dir"])


def phantom_studies(root: Path, patients: int, field_size: int | None = 360, **options) -> dict:
    """A studies folder of phantom spot views (0.1 mm pixels, `field_size` square, or the
    generator's default when None; `options` to spot_phantom) with one calcification cluster each
    at the centre listed in its manifest.csv (the server's candidate ROIs). Used by the server,
    Slicer and web tests and the pool's benchmark."""
    import csv
    import shutil

    phantom = spot_phantom(
        root / "phantom",
        patients=patients,
        seed=3,
        **({} if field_size is None else {"field_size": field_size}),
        **options,
    )
    folder = root / "studies"
    folder.mkdir()
    rows = list(csv.DictReader(phantom.manifest_path.open()))
    keep = ["patient_id", "image_path", "roi_x", "roi_y", "roi_size", "label", "finding"]
    with (folder / "manifest.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=keep)
        writer.writeheader()
        for row in rows:
            source = phantom.out_dir / row["image_path"]
            shutil.copy(source, folder / source.name)
            writer.writerow({**{k: row[k] for k in keep}, "image_path": source.name})
    return {"folder": folder, "rows": rows, "phantom": phantom.out_dir}


def multipart_answer(response) -> tuple[dict, bytes]:
    """Split MONAI Label's multipart answer into its params JSON and its file."""
    from requests_toolbelt.multipart.decoder import MultipartDecoder

    parts = MultipartDecoder.from_response(response).parts
    params, blob = None, None
    for part in parts:
        disposition = part.headers.get(b"Content-Disposition", b"").decode()
        if "filename=" in disposition:
            blob = part.content
        else:
            params = json.loads(part.text)
    return params, blob


def whole_image_model(out: Path, name: str, seed: int = 0, image_size: int = 128) -> Path:
    """A tiny whole-image (BAC) model folder as the mobini2024 recipe's training writes one: the
    card says `crop.task: whole_image` (views padded square, stored at `image_size`) and the
    recipe; random lite0 weights with a voting head (non-zero maps), marked as a demonstration."""
    from microcalcai.models.artifact import load_model, save_model
    from microcalcai.server.bootstrap import mark_demonstration

    folder = tiny_model(out, name, seed, voting=True)
    loaded = load_model(folder)
    card = loaded.card
    card.crop = {"task": "whole_image", "roi_size": image_size}
    card.recipe = {"name": "mobini2024", "task": "whole_image"}
    card.threshold_method = "fixed 0.5 (test model)"
    save_model(loaded.module, card, folder, overwrite=True)
    mark_demonstration(folder)
    return folder


def tile_model(out: Path, name: str, seed: int = 0, size_mm: float = 51.2) -> Path:
    """A tiny BAC tile model folder as tile training (recipe task tiles) writes one: the card says
    `crop.task: tiles` with its tiling (tiles of `size_mm`, 64 pixels at 0.8 mm, side by side so
    a view has few to score); random lite0 weights with a voting head (non-zero maps), marked as a
    demonstration."""
    from microcalcai.models.artifact import load_model, save_model
    from microcalcai.server.bootstrap import mark_demonstration

    folder = tiny_model(out, name, seed, voting=True)
    loaded = load_model(folder)
    card = loaded.card
    card.crop = {"task": "tiles", "roi_size": INPUT_SIZE, "tiles": {"size_mm": size_mm, "stride": 1.0}}
    card.recipe = {"name": "mobini2024", "task": "tiles"}
    save_model(loaded.module, card, folder, overwrite=True)
    mark_demonstration(folder)
    return folder


def bac_exam_studies(root: Path, exams: int = 2) -> dict:
    """A studies folder of phantom four-view BAC exams at 0.8 mm (300 x 224 CC, 375 x 300 MLO
    views: seconds to make), one DICOM per view named by its image id. Returns the folder and the
    phantom's manifest rows."""
    import csv
    import shutil

    from microcalcai.phantom.exam import generate_exams

    result = generate_exams(root / "exams", exams=exams, seed=1, spacing_mm=0.8, progress=False)
    folder = root / "studies"
    folder.mkdir(parents=True, exist_ok=True)
    rows = list(csv.DictReader(result.manifest_path.open()))
    for row in rows:
        shutil.copy(result.out_dir / row["image_path"], folder / f"{row['image_id']}.dcm")
    return {"folder": folder, "rows": rows, "exams": result.out_dir}


def label_part(annotation) -> dict:
    """The `label` part of a PUT /datastore/label multipart body: the annotation (dict) as JSON,
    or bytes as they are."""
    body = annotation if isinstance(annotation, bytes) else json.dumps(annotation).encode()
    return {"label": ("label.json", body, "application/json")}


def error_detail(response) -> str:
    """The `detail` of a 4xx JSON answer (fails the test if the body is not such JSON)."""
    assert response.headers.get("content-type", "").startswith("application/json"), response.text[:300]
    body = response.json()
    assert isinstance(body, dict) and "detail" in body, body
    detail = body["detail"]
    return detail if isinstance(detail, str) else json.dumps(detail)


def ambiguous_roi_models(workspace: Path, scratch: Path, crops: dict, margin: float = 8.0) -> tuple:
    """Host two tiny models (and their ensemble) that are sure about every ROI of `crops`
    ({key: float32 crop as the server cuts it}) but one, the returned key, which they find
    exactly ambiguous. Returns (that key, the hosted names).

    Each member's head reads one pooled feature channel k, the one where the chosen ROI stands
    out most above all others: logit(malignant) - logit(benign) = a * (f_k - f_k(chosen)). So the
    chosen ROI gets P = 0.5 and every other ROI P < sigmoid(-margin). Under MC dropout the
    chosen ROI's passes split (channel k kept: clearly malignant; dropped: clearly benign), the
    others' stay benign: its BALD score is the highest too. Real networks, real model folders.
    """
    import torch

    from microcalcai.models.artifact import load_model, save_model
    from microcalcai.server.workspace import build_ensemble, install_model, prepare_app

    prepare_app(workspace)
    keys = list(crops)
    names, chosen = [], None
    for seed, name in enumerate(("amb-a", "amb-b")):
        folder = tiny_model(scratch, name, seed)
        loaded = load_model(folder)
        module = loaded.module.eval()
        from microcalcai.models.preprocess import preprocess_crops

        card = loaded.card
        with torch.no_grad():  # one crop at a time: the ROIs differ in size
            features = np.concatenate(
                [
                    module.forward_head(
                        module.forward_features(
                            preprocess_crops(
                                crops[k][None].astype(np.float32),
                                card.input_size,
                                card.mean,
                                card.std,
                                card.channel_mode,
                            )
                        ),
                        pre_logits=True,
                    ).numpy()
                    for k in keys
                ]
            )
        if chosen is None:  # the ROI and channel where one ROI stands out most (first member decides)
            top2 = np.sort(features, axis=0)[-2:]
            ratio = top2[1] / np.maximum(top2[0], 1e-6)
            channel = int(np.argmax(np.where(top2[0] > 0, ratio, 0)))
            chosen = keys[int(np.argmax(features[:, channel]))]
        row = keys.index(chosen)
        # this member's own channel where the chosen ROI stands out most
        others = np.delete(features, row, axis=0).max(axis=0)
        channel = int(np.argmax(features[row] / np.maximum(others, 1e-6)))
        level = float(features[row, channel])
        gap = level - float(others[channel])
        assert gap > 0.3 * level, f"no feature channel singles out {chosen} in {name}; change the seed"
        scale = margin / gap
        head = module.get_classifier()
        with torch.no_grad():
            head.weight.zero_()
            head.bias.zero_()
            head.weight[1, channel] = scale
            head.bias[1] = -scale * level
        card.threshold_method = "fixed 0.5 (test model: one ROI ambiguous)"
        save_model(module, card, folder, overwrite=True)
        names.append(install_model(workspace, folder))
    build_ensemble(workspace, threshold=0.5, threshold_method="fixed 0.5 (test ensemble)")
    return chosen, names


def wait_until(predicate, timeout: float, what: str):
    """The predicate's first truthy value, polled every 0.5 s; fails the test after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


@contextmanager
def running_server(studies: Path, workspace: Path, threads: int = 1):
    """A real MONAI Label server on 127.0.0.1 over the block, stopped by its process id after it."""
    from microcalcai.server.launch import LocalServer

    local = LocalServer(studies, workspace, env={"OMP_NUM_THREADS": str(threads)})
    local.start()
    try:
        yield local
    finally:
        local.stop()


def post_infer(
    http, server, model: str, image: str, params: dict, output: str = "all", files=None, timeout=300
):
    """POST /infer/{model} as MONAI Label's clients send it: params as a form field, a file part
    always present (an empty one when nothing is uploaded)."""
    return http.post(
        f"{server.url}/infer/{model}",
        params={"image": image, "output": output},
        data={"params": json.dumps(params)},
        files=files or {"_": ("", b"")},
        timeout=timeout,
    )
