"""`/train/{model}`: fine-tune a hosted model on the saved labels, publish only if not worse.

MONAI Label runs this task in a child process (`monailabel.interfaces.utils.app -m train`), so
stopping a training kills that process: the new version is published only at the very end, by
one atomic pointer swap, and a stopped or killed run leaves the served model untouched.
Progress goes to `models/<name>/train_stats.json`, which the server shows in /info/ train_stats.
The run knows its id and the version it started from (training_guard.py): it publishes under
the training lock, and only while its model still serves that version.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

import numpy as np
from monailabel.interfaces.tasks.train import TrainTask

from microcalcai.server.hosted import ENSEMBLE
from microcalcai.server.training_guard import StalePublish, TrainingRun

LOG = logging.getLogger(__name__)
DEFAULTS = {
    "recipe": "phantom",
    # Over labels alone, 3 epochs (even at the recipe's 256 images an epoch) left test AUC flat from
    # 40 to 430 labels (0.75-0.79); 10 epochs rose from 0.76 to 0.84 (bench_retraining_labels.py),
    # so more labels only help a retraining that runs long enough to use them.
    "max_epochs": 10,
    # A retraining starts halfway between the served weights and ImageNet's (train.warm_start),
    # at the recipe's rate. Plain served weights learnt little from new labels: a member trained on
    # 250 labels and retrained on 450 gained +0.012 test AUC at a tenth of the rate, +0.013 at the
    # full rate, +0.022 from halfway, over two seeds (bench_retraining_labels.py --warm-from,
    # RESULTS.md); toward random noise instead (0.5 x served + 0.1 x a fresh initialisation, the
    # frozen layers then changed too) it fell to 0.41-0.57.
    "lr_scale": 1.0,
    "shrink": 0.5,
    "perturb": 0.5,
    "toward": "imagenet",
    "val_fraction": 0.3,
    "publish_if": "not_worse",
    "tolerance": 0.0,
    "seed": 0,
    "include_manifest_labels": False,
    "min_per_class": 2,
    # train on the labels plus the default models' own ROIs, validate on their fixed held-out
    # ROIs plus the labels' validation patients (bootstrap/reference.csv; ignored without one)
    "keep_reference": True,
}
PUBLISH_RULES = ("not_worse", "always")


class FineTuneTask(TrainTask):
    def __init__(self, name: str, app):
        super().__init__(
            f"Fine-tune {name!r} from its served weights on the saved labels (split by patient); "
            "publish the new version only when its validation AUC is not worse"
        )
        self.name = name
        self.app = app

    def config(self):
        return dict(DEFAULTS)

    def stats(self):
        stats = self.app.store.read_stats(self.name)
        stats.setdefault("state", "idle")
        if stats["state"] == "running" and not _alive(stats.get("pid")):
            stats["state"] = "stopped"
            stats["message"] = "the training process ended before finishing; the served model is unchanged"
        stats["versions"] = self.app.store.versions(self.name)
        stats["served_version"] = self.app.store.current_version(self.name)
        return stats

    def __call__(self, request, datastore):
        from microcalcai.server.train_params import check_params

        progress = Progress(self.app.store, self.name)
        run = TrainingRun(self.app.workspace, self.app.store, self.name, request)
        try:
            # The server checked these already; a run started some other way is checked here.
            params = check_params(
                {k: v for k, v in request.items() if k in DEFAULTS}, self.config(), PUBLISH_RULES
            )
            run.begin()
            result = self._run(params, datastore, progress, run)
        except Exception as exc:
            progress.update(state="failed", message=_public(exc))
            raise
        finally:
            run.end()
        return result

    def _run(self, params: dict, datastore, progress: Progress, run: TrainingRun) -> dict:
        from microcalcai.server.training_data import labeled_frame, reference_frame, with_reference

        store = self.app.store
        base_version = run.base_version
        base_dir = store.version_dir(self.name, base_version)
        progress.update(
            state="running",
            pid=os.getpid(),
            epoch=0,
            total_epochs=int(params["max_epochs"]),
            progress=0.0,
            base_version=base_version,
            started=_now(),
            message="collecting labels",
            published=False,
        )
        frame = labeled_frame(
            datastore, self.app.pool, include_manifest=bool(params["include_manifest_labels"])
        )
        reference = reference_frame(self.app.workspace) if params["keep_reference"] else None
        frame = with_reference(
            frame, reference, float(params["val_fraction"]), int(params["seed"]), int(params["min_per_class"])
        )
        run_dir = store.folder(self.name) / "runs" / time.strftime("%Y%m%d-%H%M%S")
        progress.update(
            message=f"training on {int((frame.split == 'train').sum())} ROIs, "
            f"validating on {int((frame.split == 'val').sum())}",
            run_dir=str(run_dir.relative_to(store.folder(self.name))),
        )

        from microcalcai.server.finetune import fine_tune

        new_dir, start = fine_tune(
            base_dir,
            frame,
            run_dir,
            recipe=params["recipe"],
            epochs=int(params["max_epochs"]),
            seed=int(params["seed"]),
            lr_scale=float(params["lr_scale"]),
            shrink=float(params["shrink"]),
            perturb=float(params["perturb"]),
            toward=params["toward"],
            on_epoch=progress.epoch,
        )
        val = frame[frame.split == "val"]
        comparison = compare_on(base_dir, new_dir, val)
        base_auc, new_auc = comparison["base_val_auc"], comparison["new_val_auc"]
        publish = params["publish_if"] == "always" or new_auc >= base_auc - float(params["tolerance"])
        summary = {
            **comparison,
            "published": bool(publish),
            "n_train": int((frame.split == "train").sum()),
            "n_val": int(len(val)),
            "n_labels": int((frame.source == "label").sum()),
            "n_reference": int((frame.source == "reference").sum()),
            "start": start,
        }
        stale = None
        if publish:
            try:
                version = self._publish(new_dir, run, base_dir, start)
            except StalePublish as exc:
                stale = str(exc)
                summary["published"] = False
        if stale:
            message = f"not published: {stale}"
        elif publish:
            summary["published_version"] = version
            message = f"published version {version}: validation AUC {new_auc:.3f} vs {base_auc:.3f}"
        else:
            message = (
                f"not published: validation AUC {new_auc:.3f} is worse than the served version's "
                f"{base_auc:.3f}; version {base_version} stays"
            )
        progress.update(state="done", progress=1.0, message=message, finished=_now(), **summary)
        LOG.info(message)
        return summary

    def _publish(self, new_dir: Path, run: TrainingRun, base_dir: Path, start: dict) -> str:
        """Copy the new model beside the versions, then, under the training lock and only if
        this run may still publish (else StalePublish), name it the next version and serve it."""
        import shutil

        from microcalcai.models.artifact import read_card
        from microcalcai.server.workspace import build_ensemble, rename_card

        store = self.app.store
        staging = store.version_dir(self.name, f".staging-{os.getpid()}")
        shutil.rmtree(staging, ignore_errors=True)
        shutil.copytree(new_dir, staging)
        try:
            with run.publishing():
                version = store.next_version(self.name)
                target = store.version_dir(self.name, version)
                rename_card(staging, self.name, version)
                inherit_from_base(staging, base_dir, start)
                staging.rename(target)
                previous = store.current_version(self.name)
                store.publish(self.name, version)
                try:
                    if ENSEMBLE in store.names():
                        card = self.app.served.get(ENSEMBLE).card
                        build_ensemble(
                            self.app.workspace,
                            threshold=card["threshold"],
                            threshold_method=card.get("threshold_method", ""),
                            val_metrics=card.get("val_metrics"),
                        )
                except BaseException:
                    # All or nothing: a member served without the ensemble over it would leave
                    # the ensemble on the old version while /info and the stats disagree.
                    store.publish(self.name, previous)
                    shutil.rmtree(target, ignore_errors=True)
                    raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        read_card(target)  # the published folder must load
        return version


def compare_on(base_dir: Path, new_dir: Path, val) -> dict:
    """Both versions on the same validation ROIs: their AUCs and the paired (DeLong) difference
    with its 95% CI, so a client sees whether the set was large enough to tell them apart."""
    from microcalcai.evaluate.compare import delong_paired
    from microcalcai.server.finetune import predict_frame
    from microcalcai.train.data import labels_of

    base, new = predict_frame(base_dir, val), predict_frame(new_dir, val)
    labels = labels_of(val)
    if len(set(labels.tolist())) < 2:
        return {"base_val_auc": float("nan"), "new_val_auc": float("nan")}
    test = delong_paired(labels.astype(bool), new, base, names=("new", "base"))
    return {
        "base_val_auc": test.estimate_b,
        "new_val_auc": test.estimate_a,
        "val_auc_difference": test.difference,
        "val_auc_difference_ci95": list(test.difference_ci) if test.difference_ci else None,
        "val_malignant": int(labels.sum()),
    }


def inherit_from_base(folder: Path, base_dir: Path, start: dict) -> None:
    """The new version's card says which version it was retrained from and how it started (its
    recipe names only the run's start folder). A version fine-tuned from a demonstration model is
    still one (its data are mostly the phantom's, and it was never validated on real images)."""
    import json

    from microcalcai.atomic import atomic_write_text
    from microcalcai.models.artifact import read_card

    base = read_card(base_dir)
    path = folder / "model.json"
    card = json.loads(path.read_text())
    card["weights_init"] = {
        **card.get("weights_init", {}),
        "retrained_from": {"version": base.version, "weights_sha256": base.weights_sha256, **start},
    }
    if base.demonstration:
        card.update(demonstration=True, intended_use=base.intended_use)
    atomic_write_text(path, json.dumps(card, indent=2, sort_keys=True) + "\n")


class Progress:
    """Writes train_stats.json (atomically) as the run goes, with an ETA from the epoch times."""

    def __init__(self, store, name: str):
        self.store, self.name = store, name
        self.stats: dict = {}
        self.started = time.monotonic()
        self.lock = threading.Lock()

    def update(self, **fields) -> None:
        with self.lock:
            self.stats.update(fields)
            self.stats["updated"] = _now()
            self.store.write_stats(self.name, self.stats)

    def epoch(self, epoch: int, total: int, metrics: dict) -> None:
        elapsed = time.monotonic() - self.started
        eta = elapsed / max(epoch, 1) * (total - epoch)
        self.update(
            epoch=epoch,
            total_epochs=total,
            progress=round(epoch / max(total, 1), 4),
            eta_s=round(eta, 1),
            current_val_auc=_finite(metrics.get("val_auc")),
            current_val_loss=_finite(metrics.get("val_loss")),
            message=f"epoch {epoch}/{total}",
        )


def _finite(value):
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if np.isfinite(value) else None


def _alive(pid) -> bool:
    if not pid:
        return False
    try:
        os.kill(int(pid), 0)
    except (ProcessLookupError, ValueError):
        return False
    except PermissionError:
        return True
    # A zombie (killed, not yet reaped by MONAI Label) is not running a training.
    try:
        with open(f"/proc/{int(pid)}/stat") as handle:
            return handle.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def _public(exc: Exception) -> str:
    """The failure as /info/ train_stats shows it: no absolute paths."""
    from microcalcai.server.public_text import scrub

    return scrub(str(exc))


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
