"""Active-learning benchmark: labels -> test AUC of the served ensemble, per strategy, over HTTP.

A real MicrocalcAI server (MONAI Label) per run hosts two tf_efficientnet_lite0 members built
from the packaged ImageNet weights (input 128 px, the default models' size; a fresh head) and
their ensemble, over a pool of unlabeled phantom spot ROIs (0.1 mm pixels, 96 px ROIs, one
calcification cluster each; the manifest the server reads has no labels). A simulated annotator
answers from the phantom's ground truth:

    cold start: k ROIs from the `random` strategy (the same k for every strategy of a seed),
    then rounds: POST /train/{member} for each member (the server's default training) ->
    test AUC of the served ensemble (POST /infer/ensemble on every test ROI, uploaded: the test
    patients are not in the pool) -> the strategy proposes b ROIs (params.count = b) -> labels.

Strategies: random; entropy (ensemble predictive entropy, top b); bald (MC-dropout mutual
information over both members, top b); diverse (entropy, uncertainty-weighted k-means over the
models' features: a batch spread over the uncertain ROIs); bald-diverse (BALD's scores, diverse's
batch); balanced (entropy, the most uncertain
of each side of the decision, half and half); typical (TypiClust: dense ROIs of the clusters no
label covers). Diagnostics, asked for by name only: oracle-clean, the annotator's own random
pick among ROIs of clear truth in the pool's class mix; random-denoised, random's ROIs each
labelled with its likelier class, not the phantom's draw (whether label noise is what costs).

Each run (strategy, seed) writes its JSON after every round to OUT/runs/ and keeps its server
workspace under OUT/work/: a stopped benchmark resumes where it stopped. A run's server is
started for each round, or kept from round to round with --keep-servers (the same records; the
memory of one server per run). `--report` (also done
at the end of a run) reads every run JSON and writes OUT/summary.json and the figure: mean
labels-to-AUC curves with 95% confidence bands over seeds, the area under each curve, and the
labels each strategy needs to reach random's final AUC; beside them, how noisy the labels each
strategy chose are by construction (the phantom's P(malignant) of each chosen ROI).
`--first-picks` asks each strategy (and BALD) for its first batch from every seed's cold start,
unlabelled and without training, and writes the label noise of those batches: minutes, not hours.

Variants (--variant, VARIANTS): `cpu`, every recorded run, is the above; `gpu` is the seed
studies' setting: Kang et al.'s five networks from ImageNet with their recipe on 512 px ROIs at
0.07 mm, no resize. --arch, --spacing-mm, --roi-size, --input-size, --recipe and --weights
change one part of either.

Usage (small, for a try):  nice -n 5 .venv/bin/python benchmarks/bench_active_learning.py \
    --pool-patients 40 --test-patients 20 --cold-start 10 --batch 10 --rounds 2 --seeds 0 \
    --out /tmp/al-try
Full: see benchmarks/RESULTS.md (section "Active learning") for the command that was run.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import shutil
import signal
import string
import sys
import time
from pathlib import Path

import numpy as np

# The tests' server helpers (spot phantom views), as bench_web.py and bench_hostile.py use them.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "Testing" / "server"))

STRATEGIES = {
    "random": ("random", {}),
    "entropy": ("uncertain", {"method": "entropy", "selection": "top"}),
    "bald": ("uncertain", {"method": "bald", "selection": "top"}),  # the server's 100 head passes
    "diverse": ("uncertain", {"method": "entropy", "selection": "diverse"}),
    # BALD's scores with diverse's batch: whether top BALD's batches of 30 are redundant
    "bald-diverse": ("uncertain", {"method": "bald", "selection": "diverse"}),
    "balanced": ("uncertain", {"method": "entropy", "selection": "balanced"}),
    "typical": ("typical", {}),
    # diverse below the server's AUTO_SWITCH_LABELS labelled pool ROIs, random from there on
    "auto": ("auto", {}),
    # Diagnostics, not strategies: the simulated annotator picks by the phantom's truth (below),
    # or labels random's own ROIs with the likelier class.
    "oracle-clean": (None, {}),
    "random-denoised": ("random", {}),
}
# random-denoised: random's ROIs (the same seeds: the same ROIs), each labelled with its likelier
# class (malignant when P(malignant) > 0.5) instead of the phantom's draw: random without label
# noise and nothing else changed, so whether it beats random says whether label noise costs.
LIKELIER_CLASS_LABELS = {"random-denoised"}
# run only when named: not in the default list, not asked by --first-picks (the oracle's picks
# are clear by construction, random-denoised's are random's)
DIAGNOSTICS = {"oracle-clean", *LIKELIER_CLASS_LABELS}
# oracle-clean takes random ROIs whose truth is clear, p(1-p) at most this (P(malignant) at most
# 0.184 or at least 0.816), as many malignant ones as the unlabelled pool holds in share: random's
# batch without its noisy labels, the class mix kept. Whether it beats random tells whether label
# noise is what costs the uncertainty strategies (no deployable strategy can see the truth).
CLEAN_NOISE = 0.15
ARCH = "tf_efficientnet_lite0"
INPUT_SIZE = 128  # the default models' input (server/bootstrap.py)
MEMBERS = ("lite0-a", "lite0-b")
# What the members are and what they see. `cpu` is what every recorded run used: two Lite0s from the
# ImageNet weights that install offline, on 96 px spot ROIs at 0.1 mm (a 9.6 mm field), the
# server's own recipe; minutes a round on 2 cores. `gpu` is the seed studies' setting: Kang et al.'s
# five networks with their recipe (Adam 1e-4), on 512 px ROIs at 0.07 mm (35.8 mm, the phantom's
# own defaults) fed at full resolution, no resize; too slow for a CPU. Their ImageNet weights come
# from the timm hub: where it cannot be reached, --weights none (random initial weights) or
# --arch tf_efficientnet_lite0 (weights installed offline) still runs.
KANG_ARCHS = ("resnet101", "legacy_xception", "inception_v3", "inception_resnet_v2", "densenet201")
VARIANTS = {
    "cpu": {
        "archs": [ARCH, ARCH],
        "spacing_mm": 0.1,
        "roi_size": 96,
        "input_size": INPUT_SIZE,
        "recipe": None,  # the server's default retraining
        "weights": "imagenet",
    },
    "gpu": {
        "archs": list(KANG_ARCHS),
        "spacing_mm": 0.07,
        "roi_size": 512,
        "input_size": 512,
        "recipe": "kang2021",
        "weights": "imagenet",
    },
}
SHORT_NAMES = {ARCH: "lite0"}  # member names: lite0-a, lite0-b as every recorded run has them
ANNOTATOR = "simulated-annotator"
COLOURS = {
    "random": "0.35",
    "entropy": "tab:blue",
    "bald": "tab:orange",
    "diverse": "tab:green",
    "bald-diverse": "tab:pink",
    "balanced": "tab:red",
    "typical": "tab:purple",
    "auto": "tab:cyan",
    "oracle-clean": "tab:brown",
    "random-denoised": "tab:olive",
}
CHECKED_ROIS = 3  # test ROIs also asked over HTTP each round: the local scores must equal /infer


def log(message: str) -> None:
    print(time.strftime("%H:%M:%S"), message, flush=True)


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def utc_now() -> str:
    """Whole seconds, the format of the label documents' times (backfill_picked compares them)."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def machine() -> str:
    import torch

    where = f"{platform.node()} {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs"
    if torch.cuda.is_available():
        where += f", {torch.cuda.get_device_name(0)}"
    return where


def member_names(archs: list[str]) -> list[str]:
    """One name per member: the architecture's short name and a letter per copy of it."""
    seen: dict[str, int] = {}
    names = []
    for arch in archs:
        short = SHORT_NAMES.get(arch, arch)
        names.append(f"{short}-{string.ascii_lowercase[seen.get(short, 0)]}")
        seen[short] = seen.get(short, 0) + 1
    return names


def setup_of(args) -> dict:
    """The variant's members, geometry, recipe and weights, each overridden where given."""
    given = {
        "archs": args.arch,
        "spacing_mm": args.spacing_mm,
        "roi_size": args.roi_size,
        "input_size": args.input_size,
        "recipe": args.recipe,
        "weights": args.weights,
    }
    setup = VARIANTS[args.variant] | {key: value for key, value in given.items() if value is not None}
    from microcalcai.models.registry import get_arch

    setup["archs"] = [get_arch(arch).name for arch in setup["archs"]]  # an unknown name lists ours
    if len(setup["archs"]) > len(string.ascii_lowercase):  # one letter per copy of an architecture
        raise SystemExit(f"at most {len(string.ascii_lowercase)} members, got {len(setup['archs'])}")
    if setup["weights"] not in ("imagenet", "none"):
        raise SystemExit(f"--weights is 'imagenet' or 'none', got {setup['weights']!r}")
    setup["members"] = member_names(setup["archs"])
    return setup


def needs_hub(setup: dict) -> bool:
    """Whether a member's ImageNet weights come from the timm hub (not installed offline)."""
    from microcalcai.models.weights import imagenet_offline

    return setup["weights"] == "imagenet" and not all(imagenet_offline(arch) for arch in setup["archs"])


# -- data --------------------------------------------------------------------------------------


def make_phantom(out: Path, patients: int, seed: int, setup: dict) -> tuple[Path, list[dict]]:
    """Phantom spot views at the setup's spacing and ROI size (made once); returns the folder and
    its rows."""
    from server_helpers import spot_phantom, synth_workers  # the tests' spot views, the same settings

    if not (out / "manifest.csv").is_file():
        spot_phantom(
            out,
            patients=patients,
            seed=seed,
            spacing_mm=setup["spacing_mm"],
            roi_size=setup["roi_size"],
            workers=synth_workers(),
            progress=True,
        )
    rows = phantom_rows(out)
    found = {(round(float(r["spacing_mm"]), 4), int(float(r["roi_size"]))) for r in rows}
    wanted = (round(float(setup["spacing_mm"]), 4), int(setup["roi_size"]))
    if found - {wanted}:
        raise SystemExit(
            f"{out} holds ROIs of {sorted(found)} (mm, px), not {wanted}: another variant's data; "
            "give another --out"
        )
    return out, rows


def phantom_rows(folder: Path) -> list[dict]:
    """The labelled ROI rows of a phantom folder's manifest."""
    with open(folder / "manifest.csv", newline="") as handle:
        return [r for r in csv.DictReader(handle) if r["label"] in ("benign", "malignant")]


def roi_of(row: dict) -> dict:
    return {"x": int(float(row["roi_x"])), "y": int(float(row["roi_y"])), "size": int(float(row["roi_size"]))}


def key_of(image_id: str, roi: dict) -> str:
    return f"{image_id}@{roi['x']},{roi['y']},{roi['size']}"


def make_studies(folder: Path, phantom: Path, rows: list[dict]) -> dict[str, str]:
    """A run's own studies folder (images hard-linked, a manifest with an empty label column:
    the pool is unlabeled); returns the truth {ROI key: label} the simulated annotator answers from."""
    truth = {}
    if not (folder / "manifest.csv").is_file():
        tmp = folder.with_name(folder.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        with open(tmp / "manifest.csv", "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["patient_id", "image_path", "roi_x", "roi_y", "roi_size", "label", "finding"])
            for row in rows:
                source = phantom / row["image_path"]
                target = tmp / source.name
                if not target.exists():
                    try:
                        os.link(source, target)
                    except OSError:
                        shutil.copy2(source, target)
                roi = roi_of(row)
                writer.writerow(
                    [row["patient_id"], source.name, roi["x"], roi["y"], roi["size"], "", "calcification"]
                )
        tmp.rename(folder)
    for row in rows:
        truth[key_of(Path(row["image_path"]).stem, roi_of(row))] = row["label"]
    return truth


def truth_probabilities(rows: list[dict]) -> dict[str, float]:
    """{ROI key: the phantom's P(malignant | descriptors)}, the probability its label was drawn
    with: p(1 - p) is how noisy a label of that ROI is, however good the model."""
    return {key_of(Path(r["image_path"]).stem, roi_of(r)): float(r["p_malignant"]) for r in rows}


def bayes_auc(rows: list[dict]) -> float | None:
    """The AUC of the phantom's own P(malignant) on these ROIs: what no model can beat on them
    (None when they hold one class)."""
    from microcalcai.phantom import empirical_auc

    auc = empirical_auc(
        [int(r["label"] == "malignant") for r in rows], [float(r["p_malignant"]) for r in rows]
    )
    return None if auc is None else round(auc, 4)


def make_validation(workspace: Path, phantom: Path, rows: list[dict]) -> None:
    """The workspace's reference set (bootstrap/reference.csv) holding only validation ROIs: each
    retraining trains on the annotator's labels alone and is judged for publication on these
    fixed ROIs of other patients (plus its labels' validation patients), as the server judges
    its default models' retrainings, instead of a coin toss on 10-17 labelled ROIs."""
    from microcalcai.data.manifest import write_manifest
    from microcalcai.server.bootstrap import REFERENCE

    target = workspace / "bootstrap" / REFERENCE
    if target.is_file():
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    write_manifest(manifest_frame(phantom, rows, "val"), target)


def manifest_frame(phantom: Path, rows: list[dict], split: str):
    """The phantom rows as a manifest frame (absolute image paths, one split for all)."""
    import pandas as pd

    return pd.DataFrame(
        {
            "patient_id": [r["patient_id"] for r in rows],
            "image_path": [str(phantom / r["image_path"]) for r in rows],
            "image_id": [Path(r["image_path"]).stem for r in rows],
            "roi_x": [float(r["roi_x"]) for r in rows],
            "roi_y": [float(r["roi_y"]) for r in rows],
            "roi_size": [int(float(r["roi_size"])) for r in rows],
            "label": [r["label"] for r in rows],
            "finding": "calcification",
            "split": split,
        }
    )


def make_members(workspace: Path, scratch: Path, setup: dict) -> None:
    """Host the setup's members (its initial weights, fresh heads, one seed each) and their ensemble."""
    import torch

    from microcalcai.errors import NotAvailableError
    from microcalcai.models.artifact import card_for, save_model
    from microcalcai.models.registry import create_model
    from microcalcai.server.workspace import build_ensemble, has_models, install_model, prepare_app

    prepare_app(workspace)
    if has_models(workspace):
        return
    for seed, (arch, name) in enumerate(zip(setup["archs"], setup["members"], strict=True)):
        torch.manual_seed(seed)
        try:
            module = create_model(arch, weights=setup["weights"])
        except NotAvailableError as exc:
            raise SystemExit(
                f"{exc}\nWithout the hub: --weights none (random initial weights; retrainings then "
                f"start from the served weights as they are) or --arch {ARCH} (ImageNet, offline)."
            ) from exc
        card = card_for(
            arch,
            name=name,
            input_size=setup["input_size"],
            threshold=0.5,
            threshold_method="fixed 0.5 (cold start)",
            weights_init=module.weights_info.as_dict(),
        )
        install_model(workspace, save_model(module.eval(), card, scratch / name, overwrite=True))
    build_ensemble(workspace, threshold=0.5, threshold_method="fixed 0.5 (cold start)")


def _check(answer) -> None:
    if answer.status_code >= 400:
        raise RuntimeError(f"{answer.request.method} {answer.url}: {answer.status_code} {answer.text[:500]}")


def saved_annotations(studies: Path):
    """(image id, annotation) of every label the server holds, in its documents' order."""
    for path in sorted((studies / "labels" / "final").glob("*.json")):
        doc = json.loads(path.read_text())
        for annotation in doc.get("annotations", []):
            yield doc["image"], annotation


def labelled_keys(studies: Path) -> set[str]:
    return {key_of(image, annotation["roi"]) for image, annotation in saved_annotations(studies)}


def oracle_clean(studies: Path, data: dict, count: int, seed: int) -> list[dict]:
    """`count` unlabelled pool ROIs of clear truth (CLEAN_NOISE), at random within each class,
    malignant ones in the unlabelled pool's share (samples as the server answers them)."""
    done = labelled_keys(studies)
    rows = [r for r in data["pool"][1] if key_of(Path(r["image_path"]).stem, roi_of(r)) not in done]
    rng = np.random.default_rng(seed)
    malignant = round(count * sum(r["label"] == "malignant" for r in rows) / max(len(rows), 1))
    shuffled = {}
    for label in ("malignant", "benign"):
        clear = [
            r
            for r in rows
            if r["label"] == label and float(r["p_malignant"]) * (1 - float(r["p_malignant"])) <= CLEAN_NOISE
        ]
        shuffled[label] = [clear[i] for i in rng.permutation(len(clear))]
    wanted = {"malignant": malignant, "benign": count - malignant}
    for label, other in (("malignant", "benign"), ("benign", "malignant")):  # one class short: the other
        wanted[other] += max(wanted[label] - len(shuffled[label]), 0)  # fills in, the batch stays whole
    picked = shuffled["malignant"][: wanted["malignant"]] + shuffled["benign"][: wanted["benign"]]
    return [{"id": Path(r["image_path"]).stem, "roi": roi_of(r)} for r in picked]


def likelier_class(truth_p: dict[str, float]) -> dict[str, str]:
    """{ROI key: its likelier class}: the label without the draw's noise (random-denoised)."""
    return {key: "malignant" if p > 0.5 else "benign" for key, p in truth_p.items()}


def saved_labels(studies: Path) -> dict[str, int]:
    """Labels the server holds (its label documents), by class: what a resumed round starts from."""
    counts = {"benign": 0, "malignant": 0}
    for _, annotation in saved_annotations(studies):
        counts[annotation["label"]] += 1
    return counts


# -- one run -----------------------------------------------------------------------------------


# what the server's defaults for retraining served weights (lr_scale, shrink and perturb) would
# change in a training from ImageNet
COLD_START_TRAINING = {"lr_scale": 1.0, "shrink": 1.0, "perturb": 0.0}


class Annotator:
    """Asks the server for ROIs and labels them from the phantom's truth."""

    def __init__(self, url: str, truth: dict[str, str], members: list[str] = MEMBERS):
        import requests

        self.url = url
        self.truth = truth
        self.members = list(members)
        self.http = requests.Session()

    def propose(
        self, strategy: str, params: dict, count: int, seed: int, client: str = ANNOTATOR
    ) -> list[dict]:
        body = {**params, "count": count, "client_id": client, "seed": seed, "max_candidates": 100000}
        answer = self.http.post(f"{self.url}/activelearning/{strategy}", json=body, timeout=3600)
        _check(answer)
        return answer.json().get("samples", [])

    def propose_and_label(self, strategy: str, params: dict, count: int, seed: int) -> list[dict]:
        """`count` proposals labelled, asked for in parts of at most the server's MAX_COUNT (a cold
        start or batch of hundreds): each part is labelled before the next is asked for, so no
        ROI comes twice; the model does not change in between, so the parts rank as one list."""
        from microcalcai.server.strategies import MAX_COUNT

        samples: list[dict] = []
        while len(samples) < count:
            part = self.propose(strategy, params, min(MAX_COUNT, count - len(samples)), seed + len(samples))
            if not part:
                break  # the pool is used up
            self.label(part)
            samples += part
        return samples

    def propose_unlabelled(self, strategy: str, params: dict, count: int, seed: int) -> list[dict]:
        """`count` proposals left unlabelled: the parts go to annotators of their own (a lease
        keeps each part from the next), and are handed back at the end."""
        from microcalcai.server.strategies import MAX_COUNT

        samples: list[dict] = []
        clients = []
        while len(samples) < count:
            clients.append(f"{ANNOTATOR}-{strategy}-{len(clients)}")
            # each part's seed as propose_and_label gives it: the batch the loop's round got (for
            # typical nearly: features computed in other batches round differently, moving k-means)
            part = self.propose(
                strategy, params, min(MAX_COUNT, count - len(samples)), seed + len(samples), clients[-1]
            )
            if not part:
                break
            samples += part
        for client in clients:
            self.propose(strategy, {}, 0, seed, client)  # count 0: hands the lease back
        return samples

    def label(self, samples: list[dict]) -> dict[str, int]:
        counts = {"benign": 0, "malignant": 0}
        for sample in samples:
            label = self.truth[key_of(sample["id"], sample["roi"])]
            saved = self.http.put(
                f"{self.url}/datastore/label",
                params={"image": sample["id"], "tag": "final"},
                data={"params": json.dumps({"roi": sample["roi"], "label": label, "annotator": ANNOTATOR})},
                files={"label": ("label.json", b"", "application/json")},
                timeout=120,
            )
            _check(saved)
            counts[label] += 1
        return counts

    def train(self, max_epochs: int | None, overrides: dict | None = None) -> dict:
        """Train each member in turn with the server's defaults (but `overrides`); their outcomes
        from /info/."""
        outcome = {}
        for member in self.members:
            body = {} if max_epochs is None else {"max_epochs": max_epochs}
            body.update(overrides or {})
            started = self.http.post(f"{self.url}/train/{member}", json=body, timeout=120)
            _check(started)
            while True:
                time.sleep(2)
                state = self.http.get(f"{self.url}/train/", params={"all": "false"}, timeout=60).json()
                if state.get("status") not in ("SUBMITTED", "QUEUED", "RUNNING"):
                    break
            stats = (
                self.http.get(f"{self.url}/info/", timeout=60).json().get("train_stats", {}).get(member, {})
            )
            outcome[member] = {
                "status": state.get("status"),
                **{
                    k: stats.get(k)
                    for k in (
                        "state",
                        "published",
                        "base_val_auc",
                        "new_val_auc",
                        "n_train",
                        "n_val",
                        "message",
                    )
                },
            }
        return outcome

    def http_probabilities(self, test_rows: list[dict], test_dir: Path) -> list[float]:
        """The served ensemble's answers over HTTP (each ROI's image uploaded: the test patients
        are not in the pool): what the local scores are checked against."""
        found = []
        for row in test_rows:
            path = test_dir / row["image_path"]
            answer = self.http.post(
                f"{self.url}/infer/ensemble",
                params={"image": "", "output": "json"},
                data={"params": json.dumps({"roi": roi_of(row)})},
                files={"file": (path.name, path.read_bytes(), "application/dicom")},
                timeout=300,
            )
            _check(answer)
            found.append(float(answer.json()["probability"]))
        return found


class TestSet:
    """The fixed test ROIs, cropped once the way /infer crops them, scored by the served
    ensemble's current version loaded from the server's model store with the library's
    predictor. One upload per test ROI per round cost 1.5-5 min of a 6.5-13 min round; this is
    seconds, and each round checks it against /infer on CHECKED_ROIS ROIs."""

    def __init__(self, test_dir: Path, rows: list[dict]):
        from microcalcai.roi import crop_roi
        from microcalcai.server.images import read_checked

        self.rows = rows
        self.labels = np.array([int(r["label"] == "malignant") for r in rows])
        crops = []
        for row in rows:
            path = test_dir / row["image_path"]
            roi = roi_of(row)
            crop = crop_roi(read_checked(path, name=path.name), (roi["x"], roi["y"]), size_px=roi["size"])
            crops.append(crop.pixels.astype(np.float32))
        self.crops = np.stack(crops)

    def probabilities(self, workspace: Path) -> tuple[np.ndarray, str]:
        from microcalcai.models.predictor import load_predictor
        from microcalcai.server.hosted import ENSEMBLE, ModelStore

        store = ModelStore(workspace / "models")
        version = store.current_version(ENSEMBLE)
        predictor = load_predictor(store.version_dir(ENSEMBLE, version))  # a GPU where there is one
        return np.asarray(predictor.predict(self.crops).probability, dtype=float), version


def retraining_defaults() -> dict:
    """The server's start and rate for retraining served weights, which the rounds after the cold
    start use."""
    from microcalcai.server.train_task import DEFAULTS

    return {key: DEFAULTS[key] for key in ("lr_scale", "shrink", "perturb", "toward")}


def run_config(args, strategy: str, seed: int, data: dict) -> dict:
    """What identifies a run's data and settings (the number of rounds may grow: it resumes).
    The setup's fields are written where they differ from the `cpu` variant's, so the records
    written before there were variants still resume and compare."""
    setup = args.setup
    config = {
        "strategy": strategy,
        "seed": seed,
        "pool_rois": len(data["pool"][1]),
        "test_rois": len(data["test"][1]),
        "validation_rois": len(data["val"][1]),
        "cold_start": args.cold_start,
        "batch": args.batch,
        "max_epochs": args.max_epochs,
        # what the rounds after the cold start ask of /train (the server's own where not given)
        "retraining": retraining_defaults()
        | {k: v for k, v in (train_overrides(setup, 1) or {}).items() if k != "recipe"},
        "members": setup["members"],
        "input_size": setup["input_size"],
    }
    cpu = VARIANTS["cpu"]
    config.update({key: setup[key] for key in cpu if key != "input_size" and setup[key] != cpu[key]})
    return config


def train_overrides(setup: dict, round_index: int) -> dict | None:
    """What each round's POST /train asks beyond the server's defaults."""
    overrides = {} if setup["recipe"] is None else {"recipe": setup["recipe"]}
    if round_index == 0:
        overrides.update(COLD_START_TRAINING)
    elif setup["weights"] == "none":  # no ImageNet to shrink toward: the served weights as they are
        overrides.update({"shrink": 1.0, "perturb": 0.0})
    return overrides or None


def save_record(path: Path, record: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")  # a --report beside a run writes the same record
    tmp.write_text(json.dumps(record, indent=1) + "\n")
    tmp.replace(path)


def load_record(path: Path, config: dict) -> dict | None:
    record = json.loads(path.read_text()) if path.is_file() else None
    return record if record and record.get("config") == config and record.get("rounds") else None


def _copy_run(source: Path, target: Path) -> None:
    """A run's folders from the shared cold start: images hard-linked, everything else copied
    (labels and MONAI Label's datastore file are written in place by the server)."""

    def link_images(src, dst):
        if src.endswith(".dcm"):
            try:
                return os.link(src, dst)
            except OSError:
                pass
        return shutil.copy2(src, dst)

    shutil.rmtree(target, ignore_errors=True)
    tmp = target.with_name(target.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(source, tmp, copy_function=link_images, ignore=shutil.ignore_patterns("logs", "*.lock"))
    tmp.rename(target)


def cold_start(args, seed: int, data: dict) -> tuple[Path, dict]:
    """The k random labels and the first training, shared by every strategy of a seed (so the
    curves are paired: they part only where the strategies choose)."""
    name = f"cold-seed{seed}"
    path = args.out / "cold" / f"{name}.json"
    config = run_config(args, "random", seed, data)
    record = load_record(path, config)
    if record is None:
        shutil.rmtree(args.out / "work" / name, ignore_errors=True)
        record = {"config": config, "rounds": []}
        play(args, name, "random", seed, data, record, path, upto=0)
    return args.out / "work" / name, record


def run_one(args, strategy: str, seed: int, data: dict, upto: int) -> dict:
    name = f"{strategy}-seed{seed}"
    path = args.out / "runs" / f"{name}.json"
    config = run_config(args, strategy, seed, data)
    record = load_record(path, config)
    if record is None:
        cold_dir, cold = cold_start(args, seed, data)
        _copy_run(cold_dir, args.out / "work" / name)
        record = {
            "config": config,
            "rounds": list(cold["rounds"]),
            "machine": cold.get("machine"),
            "test_labels": cold.get("test_labels"),
        }
        save_record(path, record)
    if len(record["rounds"]) > upto:
        return record
    play(args, name, strategy, seed, data, record, path, upto)
    return record


# Servers kept from one round of their run to the next (--keep-servers): a start (MONAI Label's
# imports, the app, the models) costs tens of seconds a round, where a GPU trains a round in about
# as many. {run name: LocalServer}; all stopped when main ends.
KEPT: dict[str, object] = {}


def new_server(args, work: Path):
    from microcalcai.server.launch import LocalServer

    server = LocalServer(work / "studies", work / "workspace", env={"OMP_NUM_THREADS": str(args.threads)})
    return server.start()


def server_for(args, name: str, work: Path):
    """The run's server: the one kept from its last round, else a new one (kept when asked, but
    never a cold start's: the runs go on from copies of its workspace)."""
    if name in KEPT:
        return KEPT[name]
    server = new_server(args, work)
    if args.keep_servers and not name.startswith("cold-"):
        KEPT[name] = server
    return server


def release(name: str, server) -> None:
    if KEPT.get(name) is not server:
        server.stop()


def stop_kept() -> None:
    while KEPT:
        KEPT.popitem()[1].stop()


def play(args, name, strategy, seed, data, record, path, upto: int) -> None:
    """Rounds len(record["rounds"]) .. upto of one run against its own server."""
    from sklearn.metrics import roc_auc_score

    work = args.out / "work" / name
    truth = make_studies(work / "studies", *data["pool"])
    make_members(work / "workspace", work / "built", args.setup)
    make_validation(work / "workspace", *data["val"])
    testset = data["testset"]
    record["test_labels"] = testset.labels.tolist()
    record["test_bayes_auc"] = bayes_auc(data["test"][1])
    record.setdefault("machine", machine())
    server = server_for(args, name, work)
    try:
        if strategy in LIKELIER_CLASS_LABELS:  # the cold start was labelled from the draws, as ever
            truth = likelier_class(data["truth_p"])
        annotator = Annotator(server.url, truth, args.setup["members"])
        kind, params = STRATEGIES[strategy]
        for round_index in range(len(record["rounds"]), upto + 1):
            started = time.monotonic()
            times = {}
            before = (
                dict(record["rounds"][-1]["totals"]) if record["rounds"] else {"benign": 0, "malignant": 0}
            )
            saved = saved_labels(work / "studies")
            samples_summary = picked_p = None
            if sum(saved.values()) == sum(before.values()):
                if round_index == 0:
                    samples = annotator.propose_and_label("random", {}, args.cold_start, seed)
                elif kind is None:
                    samples = oracle_clean(work / "studies", data, args.batch, 1000 * seed + round_index)
                    annotator.label(samples)
                else:
                    samples = annotator.propose_and_label(kind, params, args.batch, 1000 * seed + round_index)
                times["propose_s"] = round(time.monotonic() - started, 1)
                # what the strategy saw in what it proposed: the model's doubt and P(malignant)
                samples_summary = [
                    {k: s.get(k) for k in ("score", "probability")}
                    | {"label": truth[key_of(s["id"], s["roi"])]}
                    for s in samples
                ]
                picked_p = [data["truth_p"][key_of(s["id"], s["roi"])] for s in samples]
                saved = saved_labels(work / "studies")
            else:  # a round stopped after its labels were saved: it goes on from its training
                log(f"{name} round {round_index}: resuming with the {saved} labels already saved")
            totals = saved
            new = {k: totals[k] - before[k] for k in totals}
            clock = time.monotonic()
            if min(totals.values()) >= 4:  # the server's own floor: 2 per class in train and in val
                # the cold start's members leave ImageNet (fresh heads): the recipe's own rate and
                # ImageNet's weights as they are, not the server's start for retraining served weights
                trained = annotator.train(args.max_epochs, train_overrides(args.setup, round_index))
            else:
                trained = {"skipped": f"too few labels of a class to train: {totals}"}
            times["train_s"] = round(time.monotonic() - clock, 1)
            clock = time.monotonic()
            probabilities, version = testset.probabilities(work / "workspace")
            auc = float(roc_auc_score(testset.labels, probabilities))
            times["test_s"] = round(time.monotonic() - clock, 1)
            over_http = annotator.http_probabilities(testset.rows[:CHECKED_ROIS], data["test"][0])
            difference = float(np.max(np.abs(np.array(over_http) - probabilities[:CHECKED_ROIS])))
            if difference > 1e-4:
                raise RuntimeError(
                    f"the served ensemble's local scores differ from /infer by {difference:.2g} on "
                    f"{CHECKED_ROIS} test ROIs: the test AUC would not be the served model's"
                )
            entry = {
                "round": round_index,
                "labels": sum(totals.values()),
                "new": new,
                "totals": totals,
                "test_auc": auc,
                "trained": trained,
                "served_version": version,
                "http_check_max_difference": difference,
                "proposed": samples_summary,
                "picked_p_malignant": picked_p,
                **times,
                "round_s": round(time.monotonic() - started, 1),
                "load_average": load_average(),
                "finished": utc_now(),
                "test_probabilities": [round(float(x), 6) for x in probabilities],
            }
            record["rounds"].append(entry)
            save_record(path, record)
            log(
                f"{name} round {round_index}/{upto}: {entry['labels']} labels {totals}, test AUC {auc:.3f} "
                f"(ensemble {version}), {entry['round_s']:.0f} s (propose {times.get('propose_s', 0):.0f}, "
                f"train {times['train_s']:.0f}, test {times['test_s']:.0f}), load {entry['load_average'][0]}"
            )
    finally:
        release(name, server)


def first_picks(args) -> dict:
    """What each strategy would choose first from the cold-start models, without labelling or
    training: the label noise of its first batch, per seed, against random's. A diagnostic of
    the uncertainty scores themselves (minutes, where a round of the loop is a quarter hour)."""

    truth_p = pool_truth(args.out)
    found: dict[str, list] = {  # bald once
        name: [] for name in dict.fromkeys(("bald", *args.strategies)) if name not in DIAGNOSTICS
    }
    started, load_start = utc_now(), load_average()
    for seed in args.seeds:
        cold = args.out / "work" / f"cold-seed{seed}"
        record = args.out / "cold" / f"cold-seed{seed}.json"
        if truth_p is None or not record.is_file():
            raise SystemExit(f"no cold start of seed {seed} in {args.out}: run the benchmark first")
        batch = json.loads(record.read_text())["config"]["batch"]
        if batch != args.batch:
            raise SystemExit(
                f"--batch {args.batch}, but the runs in {args.out} label {batch} a round: "
                f"give --batch {batch}"
            )
        work = args.out / "work" / f"first-picks-seed{seed}"
        _copy_run(cold, work)
        server = new_server(args, work)
        try:
            annotator = Annotator(server.url, {}, args.setup["members"])
            for name in found:
                kind, params = STRATEGIES[name]
                picked = annotator.propose_unlabelled(kind, params, args.batch, 1000 * seed + 1)
                found[name].append([truth_p[key_of(s["id"], s["roi"])] for s in picked])
                row = noise_of(found[name][-1])
                log(f"seed {seed} {name:8s} first {row['rois']}: label noise {row['mean_p_times_1_minus_p']}")
        finally:
            server.stop()
    summary = {
        "strategies": {
            name: {
                "per_seed": [noise_of(p)["mean_p_times_1_minus_p"] for p in picks],
                **noise_of([x for p in picks for x in p]),
            }
            for name, picks in found.items()
        },
        "pool_label_noise": noise_of(list(truth_p.values()))["mean_p_times_1_minus_p"],
        "seeds": args.seeds,
        "batch": args.batch,
        "started": started,
        "finished": utc_now(),
        "load_average_start_end": [load_start, load_average()],
        "machine": machine(),
    }
    (args.out / "first-picks.json").write_text(json.dumps(summary, indent=1) + "\n")
    return summary


# -- report ------------------------------------------------------------------------------------


def curves(out: Path) -> dict[str, dict]:
    """{strategy: {"labels": [...], "auc": (seeds, rounds) array}} over the rounds all seeds have."""
    runs: dict[str, list[dict]] = {}
    for path in sorted((out / "runs").glob("*.json")):
        record = json.loads(path.read_text())
        if record.get("rounds"):
            runs.setdefault(record["config"]["strategy"], []).append(record)
    found = {}
    for strategy, records in runs.items():
        length = min(len(r["rounds"]) for r in records)
        labels = [r["labels"] for r in records[0]["rounds"][:length]]
        found[strategy] = {
            "labels": labels,
            "auc": np.array([[x["test_auc"] for x in r["rounds"][:length]] for r in records]),
            "seeds": [r["config"]["seed"] for r in records],
            "round_s": [x["round_s"] for r in records for x in r["rounds"][1:length]],
            "parts_s": {
                part: [x[part] for r in records for x in r["rounds"][1:length] if part in x]
                for part in ("propose_s", "train_s", "test_s")
            },
            "records": records,
            "load": [x["load_average"][0] for r in records for x in r["rounds"][:length]],
        }
    return found


def band(auc: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean and 95% t confidence band over seeds (no band from one seed)."""
    from scipy import stats

    mean = auc.mean(axis=0)
    if len(auc) < 2:
        return mean, mean, mean
    half = stats.t.ppf(0.975, len(auc) - 1) * auc.std(axis=0, ddof=1) / np.sqrt(len(auc))
    return mean, mean - half, mean + half


def labels_to_reach(labels: list[int], mean: np.ndarray, target: float) -> float | None:
    """Labels at which the mean curve first reaches `target` (linear between rounds)."""
    for i, value in enumerate(mean):
        if value >= target:
            if i == 0:
                return float(labels[0])
            x0, x1, y0 = labels[i - 1], labels[i], mean[i - 1]
            return float(x0 + (target - y0) / (value - y0) * (x1 - x0))
    return None


def paired_with_random(data: dict, random: dict | None) -> dict | None:
    """The strategy's final test AUC minus random's at the same labels, seed by seed (the seeds
    share their cold start and test set): mean and 95% t interval over the seeds."""
    if random is None or len(data["labels"]) != len(random["labels"]):
        return None
    return _paired_at(data, random, -1)


def minus_random_by_round(data: dict, random: dict | None) -> list[dict] | None:
    """paired_with_random at every round both curves reached: where a strategy gains or loses
    along the way (auto's two stages), not only at the end."""
    if random is None:
        return None
    rounds = min(len(data["labels"]), len(random["labels"]))
    if data["labels"][:rounds] != random["labels"][:rounds]:
        return None
    found = [_paired_at(data, random, i) for i in range(rounds)]
    return [{"labels": data["labels"][i], **row} for i, row in enumerate(found) if row is not None]


def _paired_at(data: dict, random: dict, column: int) -> dict | None:
    by_seed = dict(zip(random["seeds"], random["auc"][:, column], strict=True))
    differences = np.array(
        [auc[column] - by_seed[s] for s, auc in zip(data["seeds"], data["auc"], strict=True) if s in by_seed]
    )
    if len(differences) == 0:
        return None
    mean, low, high = band(differences[:, None])
    return {
        "per_seed": [round(float(x), 4) for x in differences],
        "mean": round(float(mean[0]), 4),
        "ci95": [round(float(low[0]), 4), round(float(high[0]), 4)],
    }


def malignant_share(records: list[dict]) -> float | None:
    """Share of malignant ROIs among the labels a strategy chose (the cold start left out)."""
    new = [x["new"] for r in records for x in r["rounds"][1:] if "new" in x]
    total = sum(n["benign"] + n["malignant"] for n in new)
    return round(sum(n["malignant"] for n in new) / total, 3) if total else None


def between_rounds(records: list[dict]) -> dict:
    """Item 5: did the served ensemble's test AUC ever drop by more than its noise from one round
    to the next? Each pair of rounds is a paired DeLong difference on the same test ROIs; a drop
    beyond noise is one whose 95% CI lies wholly below zero (one-sided p < 0.025).

    That rule, applied to every pair, flags a drop in 2.5% of pairs with no real change: over a
    strategy's 15 pairs one flag is no evidence. The family-wise answer (Holm over the
    strategy's pairs at the same one-sided 0.025, statsmodels) is reported beside it."""
    from scipy import stats
    from statsmodels.stats.multitest import multipletests

    from microcalcai.evaluate.compare import delong_paired

    pairs = []
    for record in records:
        labels = record.get("test_labels")
        rounds = [x for x in record["rounds"] if "test_probabilities" in x]
        for old, new in zip(rounds, rounds[1:], strict=False):
            if labels is None or old["served_version"] == new["served_version"]:
                continue  # not republished: the same model, no change to test
            test = delong_paired(
                np.array(labels, dtype=bool),
                np.array(new["test_probabilities"]),
                np.array(old["test_probabilities"]),
            )
            low, high = test.difference_ci
            pairs.append(
                {
                    "seed": record["config"]["seed"],
                    "labels": [old["labels"], new["labels"]],
                    "difference": round(test.difference, 4),
                    "ci95": [round(low, 4), round(high, 4)],
                    # the one-sided p of a drop: None where DeLong has no variance (AUC 0 or 1)
                    "p_drop": None if test.statistic is None else float(stats.norm.cdf(test.statistic)),
                }
            )
    drops = [p for p in pairs if p["ci95"][1] < 0]
    tested = [p for p in pairs if p["p_drop"] is not None]
    if tested:
        flags, adjusted, _, _ = multipletests([p["p_drop"] for p in tested], alpha=0.025, method="holm")
        for pair, p_holm in zip(tested, adjusted, strict=True):
            pair["p_drop_holm"] = round(float(p_holm), 4)
        family = [p for p, flag in zip(tested, flags, strict=True) if flag]
    else:
        family = []
    for pair in tested:
        pair["p_drop"] = round(pair["p_drop"], 4)
    return {
        "republished_pairs": len(pairs),
        "drops_beyond_noise": drops,
        "expected_by_chance": round(0.025 * len(pairs), 2),
        "drops_beyond_noise_family_wise": family,
        "largest_drop": min((p["difference"] for p in pairs), default=None),
    }


def bayes_auc_of_test(out: Path, found: dict) -> float | None:
    """The test ROIs' Bayes-optimal AUC, from a run record or else the test phantom's manifest."""
    for data in found.values():
        for record in data["records"]:
            if record.get("test_bayes_auc") is not None:
                return record["test_bayes_auc"]
    manifest = out / "data" / "test" / "manifest.csv"
    return bayes_auc(phantom_rows(manifest.parent)) if manifest.is_file() else None


def pool_truth(out: Path) -> dict[str, float] | None:
    manifest = out / "data" / "pool" / "manifest.csv"
    if not manifest.is_file():
        return None
    with open(manifest, newline="") as handle:
        return truth_probabilities(list(csv.DictReader(handle)))


def backfill_picked(out: Path) -> None:
    """The phantom's P(malignant) of the ROIs each round chose, for rounds recorded before the
    benchmark kept it: from the run's label documents, a label belonging to the round whose end
    (`finished`) is the first at or after its time (both whole seconds, UTC). Filled only where
    the count matches the round's new labels, in the documents' order (not the proposals'), and
    marked so. Run by `--report` alone: the runs' own reports must not rewrite each other's files."""
    truth_p = pool_truth(out)
    if truth_p is None:
        return
    for path in sorted((out / "runs").glob("*.json")):
        text = path.read_text()
        record = json.loads(text)
        missing = [x for x in record["rounds"][1:] if x.get("picked_p_malignant") is None]
        studies = out / "work" / path.stem / "studies"
        if not missing or not (studies / "labels" / "final").is_dir():
            continue
        ends = [x["finished"] for x in record["rounds"]]
        by_round: dict[int, list[float]] = {}
        for image, annotation in saved_annotations(studies):
            round_index = next((i for i, end in enumerate(ends) if annotation["time"] <= end), None)
            # round 0 is the cold start (random for every strategy); None, a label saved
            # after the last recorded round (one that stopped before its end)
            if round_index:
                by_round.setdefault(round_index, []).append(truth_p[key_of(image, annotation["roi"])])
        filled = False
        for entry in missing:
            found = by_round.get(entry["round"], [])
            if found and len(found) == sum(entry["new"].values()):
                entry["picked_p_malignant"] = found
                entry["picked_from"] = "label documents (not in the order proposed)"
                filled = True
        # a run still going may have saved a round meanwhile: its record wins, left unfilled
        if filled and path.read_text() == text:
            save_record(path, record)


def label_noise(records: list[dict], length: int | None = None) -> dict | None:
    """How noisy the labels a strategy chose are by construction: the mean over its chosen ROIs
    (rounds 1 to `length` - 1, those of the curves) of p(1 - p), p the phantom's P(malignant)
    the label was drawn with (0 for a certain ROI, 0.25 for a coin toss). A label of an ROI
    ambiguous by construction tells a model less about the rule than one of a typical ROI."""
    picked = [p for r in records for x in r["rounds"][1:length] for p in (x.get("picked_p_malignant") or [])]
    if not picked:
        return None
    return noise_of(picked)


def noise_of(picked: list[float]) -> dict:
    p = np.array(picked)
    return {
        "rois": len(p),
        "mean_p_times_1_minus_p": round(float(np.mean(p * (1 - p))), 4),
        "share_between_0.35_and_0.65": round(float(np.mean((p > 0.35) & (p < 0.65))), 3),
        "picked_p_malignant": [round(float(x), 6) for x in p],
    }


def report(out: Path, figure: Path | None) -> dict:
    from scipy.integrate import trapezoid

    found = curves(out)
    if not found:
        log("no runs to report yet")
        return {}
    summary = {"strategies": {}}
    random_final = float(found["random"]["auc"].mean(axis=0)[-1]) if "random" in found else None
    random_labels = found["random"]["labels"][-1] if "random" in found else None
    for strategy, data in found.items():
        mean, low, high = band(data["auc"])
        labels = data["labels"]
        area = float(trapezoid(mean, labels) / (labels[-1] - labels[0])) if len(labels) > 1 else None
        reach = None if random_final is None else labels_to_reach(labels, mean, random_final)
        summary["strategies"][strategy] = {
            "seeds": data["seeds"],
            "labels": labels,
            "mean_auc": [round(float(x), 4) for x in mean],
            "ci95": [[round(float(a), 4), round(float(b), 4)] for a, b in zip(low, high, strict=True)],
            "area_under_curve": None if area is None else round(area, 4),
            "labels_to_random_final": None if reach is None else round(reach, 1),
            "share_of_random_labels": None
            if reach is None or not random_labels
            else round(reach / random_labels, 3),
            "median_round_s": float(np.median(data["round_s"])) if data["round_s"] else None,
            "median_parts_s": {k: float(np.median(v)) for k, v in data["parts_s"].items() if v},
            "malignant_share_of_proposals": malignant_share(data["records"]),
            "label_noise_of_proposals": label_noise(data["records"], len(labels)),
            "between_rounds": between_rounds(data["records"]),
            "load_average_1min": [float(min(data["load"])), float(max(data["load"]))],
            "final_minus_random": paired_with_random(data, found.get("random")),
            "minus_random_by_round": minus_random_by_round(data, found.get("random")),
        }
    summary["random_final_auc"] = random_final
    summary["test_bayes_auc"] = bayes_auc_of_test(out, found)
    first = next(iter(found.values()))["records"][0]
    summary["setup"] = {k: v for k, v in first["config"].items() if k not in ("strategy", "seed")}
    summary["machines"] = sorted({r.get("machine") or "?" for d in found.values() for r in d["records"]})
    truth_p = pool_truth(out)
    if truth_p is not None:  # what a label drawn at random from the whole pool would carry
        summary["pool_label_noise"] = noise_of(list(truth_p.values()))["mean_p_times_1_minus_p"]
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    if figure is not None:
        draw(found, summary, figure)
    for strategy, row in summary["strategies"].items():
        log(
            f"{strategy:8s} seeds {row['seeds']} final AUC {row['mean_auc'][-1]:.3f} "
            f"area {row['area_under_curve']} labels to random's final {row['labels_to_random_final']} "
            f"({row['share_of_random_labels']}), minus random {row['final_minus_random']}, "
            f"malignant share {row['malignant_share_of_proposals']}, "
            f"drops beyond noise {len(row['between_rounds']['drops_beyond_noise'])} of "
            f"{row['between_rounds']['republished_pairs']} (by chance "
            f"{row['between_rounds']['expected_by_chance']}; family-wise "
            f"{len(row['between_rounds']['drops_beyond_noise_family_wise'])}), "
            f"round parts {row['median_parts_s']}"
        )
    return summary


def draw(found: dict, summary: dict, figure: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    noisy = {k: v["label_noise_of_proposals"] for k, v in summary["strategies"].items()}
    noisy = {k: v for k, v in noisy.items() if v}
    if noisy:
        fig, (ax, side) = plt.subplots(1, 2, figsize=(11, 4.5), gridspec_kw={"width_ratios": [7, 3]})
        draw_label_noise(side, noisy, summary.get("pool_label_noise"))
    else:
        fig, ax = plt.subplots(figsize=(7, 4.5))
    for strategy, data in found.items():
        mean, low, high = band(data["auc"])
        row = summary["strategies"][strategy]
        colour = COLOURS.get(strategy)
        ax.plot(
            data["labels"],
            mean,
            marker="o",
            color=colour,
            label=f"{strategy} (area {row['area_under_curve']}, {len(data['seeds'])} seed(s))",
        )
        if len(data["auc"]) > 1:
            ax.fill_between(data["labels"], low, high, color=colour, alpha=0.15)
            for seed_curve in data["auc"]:  # each seed too: with 2-3 seeds the t band is wide
                ax.plot(data["labels"], seed_curve, color=colour, linewidth=0.6, alpha=0.5)
    if summary.get("random_final_auc") is not None:
        ax.axhline(summary["random_final_auc"], color="0.6", linestyle=":", linewidth=1)
    if summary.get("test_bayes_auc") is not None:
        ax.axhline(summary["test_bayes_auc"], color="black", linestyle="--", linewidth=1)
        ax.annotate(
            f"Bayes-optimal {summary['test_bayes_auc']:.3f}",
            (ax.get_xlim()[0], summary["test_bayes_auc"]),
            xytext=(4, 3),
            textcoords="offset points",
            fontsize=7,
        )
    lowest = min(float(d["auc"].min()) for d in found.values())
    ax.set_ylim(max(0.0, lowest - 0.1), 1.0)  # an AUC band beyond 1 says only "too few seeds"
    if "auto" in found:  # where auto's proposals turn from uncertain to random (its default params)
        from microcalcai.server.strategies import AUTO_SWITCH_LABELS

        ax.axvline(AUTO_SWITCH_LABELS, color=COLOURS["auto"], linestyle="--", linewidth=1)
        ax.annotate(
            f" auto: uncertain below {AUTO_SWITCH_LABELS} labels, random from there",
            (AUTO_SWITCH_LABELS, ax.get_ylim()[0]),
            xytext=(2, 4),
            textcoords="offset points",
            fontsize=7,
            color=COLOURS["auto"],
            rotation=90,
            va="bottom",
        )
    ax.set_xlabel("labels (simulated annotator, phantom ground truth)")
    ax.set_ylabel("test AUC of the served ensemble")
    setup = summary.get("setup", {})
    members = ", ".join(setup.get("members", []))
    geometry = f"{setup.get('roi_size', 96)} px ROIs at {setup.get('spacing_mm', 0.1)} mm"
    ax.set_title(
        f"Active learning on phantom spot ROIs: labels to test AUC (mean, 95% CI)\n{geometry}, "
        f"input {setup.get('input_size')} px; members {members}",
        fontsize=9,
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    figure.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(figure, dpi=110)
    plt.close(fig)
    log(f"figure: {figure}")


def draw_label_noise(ax, noisy: dict, pool: float | None) -> None:
    names = list(noisy)
    values = [noisy[k]["mean_p_times_1_minus_p"] for k in names]
    ax.barh(names, values, color=[COLOURS.get(k, "0.5") for k in names])
    for y, (name, value) in enumerate(zip(names, values, strict=True)):
        ax.text(value, y, f" {value:.3f} ({noisy[name]['rois']})", va="center", fontsize=8)
    if pool is not None:
        ax.axvline(pool, color="0.3", linestyle="--", linewidth=1, label=f"whole pool {pool:.3f}")
        ax.legend(fontsize=8, loc="lower right")
    ax.set_xlim(0, max(values + [pool or 0]) * 1.35)
    ax.set_xlabel("label noise of the chosen ROIs: mean p(1-p)")
    ax.set_title("Ambiguity of the chosen ROIs", fontsize=9)
    ax.grid(alpha=0.3, axis="x")


# -- main --------------------------------------------------------------------------------------


def parse_args(argv=None) -> argparse.Namespace:
    """The command line, with the setup (`setup_of`) the run uses."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/active-learning"))
    parser.add_argument(
        "--figure",
        type=Path,
        default=None,
        help="where the report draws its figure (default OUT/active-learning.png: a run in progress "
        "must not replace the figure the docs show)",
    )
    parser.add_argument("--pool-patients", type=int, default=270, help="about 1.5 ROIs a patient")
    parser.add_argument("--test-patients", type=int, default=100)
    parser.add_argument(
        "--val-patients", type=int, default=80, help="the fixed validation ROIs that decide publication"
    )
    parser.add_argument("--cold-start", type=int, default=20)
    parser.add_argument("--batch", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=8, help="rounds after the cold start")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "--strategies",
        nargs="+",
        default=[name for name in STRATEGIES if name not in DIAGNOSTICS],
        choices=list(STRATEGIES),
    )
    parser.add_argument(
        "--variant",
        choices=list(VARIANTS),
        default="cpu",
        help="cpu: two Lite0s on 96 px ROIs at 0.1 mm; gpu: Kang et al.'s five networks and recipe on "
        "512 px ROIs at 0.07 mm at full resolution (VARIANTS; each part can be changed below)",
    )
    parser.add_argument("--arch", nargs="+", default=None, help="the members' architectures (timm names)")
    parser.add_argument("--spacing-mm", type=float, default=None, help="the phantom's pixel spacing")
    parser.add_argument("--roi-size", type=int, default=None, help="the ROIs' size in pixels")
    parser.add_argument("--input-size", type=int, default=None, help="the members' input in pixels")
    parser.add_argument("--recipe", default=None, help="the retrainings' recipe (default: the server's)")
    parser.add_argument("--weights", default=None, help="the members' initial weights: imagenet or none")
    parser.add_argument("--max-epochs", type=int, default=None, help="default: the server's own")
    parser.add_argument("--threads", type=int, default=2, help="OMP_NUM_THREADS of the server")
    parser.add_argument(
        "--keep-servers",
        action="store_true",
        help="keep each run's server from round to round (one per strategy and seed alive at once: "
        "memory for it, a start saved a round; for a GPU machine)",
    )
    parser.add_argument("--report", action="store_true", help="only aggregate the runs written so far")
    parser.add_argument(
        "--first-picks",
        action="store_true",
        help="only ask each strategy (and bald) for its first batch from each seed's cold start, "
        "unlabelled, and write the label noise of what it chose to OUT/first-picks.json",
    )
    args = parser.parse_args(argv)
    args.out = args.out.absolute()
    args.figure = args.figure or args.out / "active-learning.png"
    args.setup = setup_of(args)
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    # a TERM (nohup, a job runner) unwinds like Ctrl-C, so each run's server is stopped by its id
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if args.report:
        backfill_picked(args.out)
        report(args.out, args.figure)
        return 0
    if args.first_picks:
        first_picks(args)
        return 0
    if not needs_hub(args.setup):  # timm would retry an unreachable hub for ~50 s per model
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    log(f"setup {args.variant}: {args.setup}; {machine()}")
    pool = make_phantom(args.out / "data" / "pool", args.pool_patients, 101, args.setup)
    test = make_phantom(args.out / "data" / "test", args.test_patients, 202, args.setup)
    val = make_phantom(args.out / "data" / "val", args.val_patients, 303, args.setup)
    data = {
        "pool": pool,
        "test": test,
        "val": val,
        "testset": TestSet(*test),
        "truth_p": truth_probabilities(pool[1]),
    }
    log(
        f"pool {len(pool[1])} ROIs, test {len(test[1])} and validation {len(val[1])} ROIs of other "
        f"patients; load {load_average()}"
    )
    # Round by round, every seed and strategy at each round before the next round: whenever the
    # benchmark stops, every curve has come as far as the others, with a band over all seeds, and a
    # later run with more --rounds or --seeds resumes.
    total = len(args.seeds) * args.rounds * len(args.strategies)
    done, started = 0, time.monotonic()
    try:
        for upto in range(1, args.rounds + 1):
            for seed in args.seeds:
                for strategy in args.strategies:
                    run_one(args, strategy, seed, data, upto)
                    done += 1
                    rate = (time.monotonic() - started) / done
                    log(f"progress {done}/{total} rounds, ETA {rate * (total - done) / 60:.0f} min")
            report(args.out, args.figure)
    finally:
        stop_kept()
    return 0


if __name__ == "__main__":
    sys.exit(main())
