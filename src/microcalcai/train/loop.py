"""The fine-tuning loop: early stopping, best-by-validation-AUC, checkpoints and resume, DDP, AMP.

One call of :func:`fit` is one full run. The last epoch's state (model, optimizer, scheduler,
scaler, random generators, history, best weights so far) is written atomically to
``checkpoints/last.pt`` after every epoch, so an interrupted run continues where it stopped and
reaches the same result as an uninterrupted one. Under ``torchrun`` (a process group is
initialised) the model is wrapped in DistributedDataParallel, the training set is sharded, every
rank evaluates the whole (small) validation set so they all take the same stopping decision, and
only rank 0 writes files. On a GPU, mixed precision (float16 with loss scaling) and channels_last
are used unless the recipe switches them off.
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import math
import os
import random
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from microcalcai.atomic import atomic_write_bytes
from microcalcai.train.logs import MetricsLog, plot_learning_curve

LOG = logging.getLogger(__name__)
CHECKPOINT = "checkpoints/last.pt"


@dataclass
class FitConfig:
    epochs: int = 10
    batch_size: int = 32
    optimizer: dict = field(
        default_factory=lambda: {
            "name": "adam",
            "lr": 1e-4,
            "betas": [0.9, 0.999],
            "weight_decay": 5e-4,
            "momentum": 0.9,
        }
    )
    scheduler: str = "none"
    monitor: str = "val_loss"
    patience: int = 20
    min_delta: float = 0.0
    select_best: str = "val_auc"
    # select_best "average": the model kept is the equal-weight average of the weights (and
    # BatchNorm statistics) after each of the last `average_epochs` scheduled epochs (a number
    # below 1: that share of the epochs, rounded up). With a cosine decay those epochs sit near one
    # minimum; on 426 test ROIs the average of the last 5 of 10 scored 0.908 where the epoch of
    # the best validation AUC scored 0.896 (benchmarks/RESULTS.md).
    average_epochs: float = 0.5
    imbalance: str = "class_weights"
    seed: int = 0
    device: str = "cpu"
    mixed_precision: bool = False
    channels_last: bool = False
    num_workers: int = 0
    freeze_blocks: int = 0
    # A few dozen labels make one optimizer step an epoch: a training from 40 labels took 3 steps
    # and left the model where it was. An epoch of a set smaller than this draws this many
    # (augmented) images with replacement, so small label sets still get enough steps.
    min_epoch_images: int = 0
    progress: bool = True
    # A budget instead of a number of epochs (benchmarks that give each network the same share of a
    # shared CPU): the epoch in which it runs out ends there and is the last one.
    max_steps: int | None = None
    max_seconds: float | None = None

    @classmethod
    def from_recipe(
        cls, recipe: dict, *, batch_size: int, device: str, epochs: int | None = None, progress: bool = True
    ) -> FitConfig:
        on_gpu = device.startswith("cuda")

        def auto(value):
            return on_gpu if value == "auto" else bool(value)

        stopping = recipe["early_stopping"]
        return cls(
            epochs=int(epochs or recipe["epochs"]),
            batch_size=batch_size,
            optimizer=dict(recipe["optimizer"]),
            scheduler=recipe["scheduler"],
            monitor=stopping["monitor"],
            patience=int(stopping["patience"]),
            min_delta=float(stopping.get("min_delta", 0.0)),
            select_best=recipe["select_best"],
            average_epochs=float(recipe.get("average_epochs") or 0.5),
            imbalance=recipe["imbalance"],
            seed=int(recipe["seed"]),
            device=device,
            mixed_precision=auto(recipe["mixed_precision"]),
            channels_last=auto(recipe["channels_last"]),
            num_workers=loader_workers(recipe["num_workers"], on_gpu),
            freeze_blocks=int(recipe.get("freeze_blocks") or 0),
            min_epoch_images=int(recipe.get("min_epoch_images") or 0),
            progress=progress,
        )


@dataclass
class FitResult:
    best_epoch: int
    best_val_auc: float
    history: list
    stopped_early: bool
    val_probability: np.ndarray  # P(malignant) of the validation set at the selected epoch
    images_per_s: float
    steps: int = 0  # optimizer steps taken, all epochs
    train_seconds: float = 0.0  # time spent in training steps (validation left out)
    averaged_epochs: list[int] = field(default_factory=list)  # select_best "average": the epochs averaged


# Loader processes on a GPU: with 512 px crops rotated and shifted in the training process, an
# H200 fine-tuned two Lite0s at 2-36% utilisation (20 s samples); workers take the augmentation
# off the training's critical path (benchmarks/bench_loader.py).
MAX_AUTO_WORKERS = 8
PREFETCH_BATCHES = 2  # the DataLoader's prefetch_factor: batches each worker holds in shared memory


def loader_workers(value, on_gpu: bool, cpus: int | None = None) -> int:
    """The recipe's num_workers as a number: 'auto' is 0 on a CPU (workers would take the cores the
    model trains on) and on a GPU one per CPU left over, up to MAX_AUTO_WORKERS, shared among the
    processes of a torchrun."""
    if value != "auto":
        return int(value)
    if not on_gpu:
        return 0
    if cpus is None:
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    per_process = cpus // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    return max(0, min(MAX_AUTO_WORKERS, per_process - 1))


def workers_that_fit(workers: int, batch_bytes: int, shared_free: int | None) -> int:
    """As many workers as can hold their prefetched batches in half the free shared memory: a
    worker whose batch does not fit dies with a bus error (a container's /dev/shm is often 64 MB)."""
    if workers <= 0 or shared_free is None:
        return workers
    return max(0, min(workers, shared_free // 2 // max(1, PREFETCH_BATCHES * batch_bytes)))


def _shared_memory_free() -> int | None:
    try:
        return shutil.disk_usage("/dev/shm").free
    except OSError:  # no /dev/shm (not Linux): torch shares through other means
        return None


def resolve_device(name: str = "auto") -> str:
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        from microcalcai.errors import NotAvailableError

        raise NotAvailableError(
            f"device {name!r} was asked for, but torch sees no CUDA GPU; use --device cpu"
        )
    return name


@contextlib.contextmanager
def torch_threads(count: int):
    """Run a block with ``count`` intra-op threads (small inputs on a shared CPU gain nothing from more)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def freeze_leading(model, blocks: int) -> list:
    """Keep the stem and the first ``blocks`` stages at their pretrained weights and BatchNorm
    statistics; returns the frozen modules (to be put back in eval mode after every ``train()``).

    Why: at 128 px the early high-resolution stages cost most of the backward pass on a CPU
    (EfficientNet-Lite0: stem + two stages frozen = 1.6x more images per CPU-second, measured in
    benchmarks/RESULTS.md), while their edge and spot detectors transfer from ImageNet as they are.
    """
    if blocks <= 0:
        return []
    stages = getattr(model, "blocks", None)
    stem = [getattr(model, name) for name in ("conv_stem", "bn1") if hasattr(model, name)]
    if stages is None or not stem:
        # a recipe's saving of CPU time, not part of what is learnt: a server retraining another
        # family of network with the same recipe trains all of it rather than fail
        LOG.warning(
            "freeze_blocks=%d: %s has no stem + `blocks` stages (timm EfficientNet/MobileNet); "
            "training all its layers",
            blocks,
            type(model).__name__,
        )
        return []
    if blocks > len(stages):
        from microcalcai.errors import InputError

        raise InputError(
            f"freeze_blocks={blocks} needs a network with at least {blocks} stages; this "
            f"{type(model).__name__} has {len(stages)}. Set freeze_blocks to {len(stages) - 1} or less"
        )
    frozen = stem + list(stages[:blocks])
    for module in frozen:
        module.requires_grad_(False)
        module.eval()
    return frozen


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)


def _distributed() -> tuple[bool, int, int]:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return True, dist.get_rank(), dist.get_world_size()
    return False, 0, 1


def _optimizer(params, spec: dict):
    name = spec["name"]
    if name == "sgd":
        return torch.optim.SGD(
            params,
            lr=spec["lr"],
            momentum=spec.get("momentum", 0.9),
            weight_decay=spec.get("weight_decay", 0.0),
        )
    kind = torch.optim.AdamW if name == "adamw" else torch.optim.Adam
    return kind(
        params,
        lr=spec["lr"],
        betas=tuple(spec.get("betas", (0.9, 0.999))),
        weight_decay=spec.get("weight_decay", 0.0),
    )


def _scheduler(optimizer, name: str, epochs: int):
    if name == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(epochs, 1))
    if name == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.5, patience=5)
    return None


def _loader(dataset, config: FitConfig, generator, distributed: bool, rank: int, world: int):
    from torch.utils.data import DataLoader, DistributedSampler, RandomSampler, WeightedRandomSampler

    labels = dataset.labels.numpy()
    draws = max(len(labels), config.min_epoch_images)
    if distributed:
        if config.imbalance == "balanced_sampler":
            LOG.warning("balanced sampling is not combined with distributed training; using class weights")
        if draws > len(labels) and rank == 0:  # one warning a run, not one per process
            LOG.warning(
                "min_epoch_images=%d is ignored under distributed training (torchrun): an epoch draws "
                "the %d training images once, shared among %d processes",
                config.min_epoch_images, len(labels), world,
            )  # fmt: skip
        sampler = DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=True, seed=config.seed)
    elif config.imbalance == "balanced_sampler":
        counts = np.bincount(labels, minlength=2).astype(float)
        weights = torch.as_tensor(1.0 / counts[labels], dtype=torch.double)
        sampler = WeightedRandomSampler(weights, num_samples=draws, replacement=True, generator=generator)
    elif draws > len(labels):
        sampler = RandomSampler(dataset, replacement=True, num_samples=draws, generator=generator)
    else:
        sampler = RandomSampler(dataset, generator=generator)
    shard = (len(dataset) if distributed else draws) // world
    # BatchNorm cannot train on a last batch of one image
    drop_last = shard > config.batch_size and shard % config.batch_size == 1
    workers = config.num_workers
    if workers > 0:
        with torch.random.fork_rng(devices=[]):  # a look at one item's size draws no augmentation
            item = dataset[0][0]
        batch_bytes = item.numel() * item.element_size() * config.batch_size
        workers = workers_that_fit(workers, batch_bytes, _shared_memory_free())
        if workers < config.num_workers:
            LOG.warning(
                "%d loader workers instead of %d: /dev/shm has room for no more batches of %.0f MB "
                "(give the container more shared memory, e.g. docker --shm-size 8g)",
                workers, config.num_workers, batch_bytes / 1e6,
            )  # fmt: skip
    return DataLoader(
        dataset,
        batch_size=config.batch_size,
        sampler=sampler,
        num_workers=workers,
        drop_last=drop_last,
        pin_memory=config.device.startswith("cuda"),
        persistent_workers=workers > 0,
        prefetch_factor=PREFETCH_BATCHES if workers > 0 else None,
    )


def class_weights(labels: np.ndarray) -> torch.Tensor:
    """Inverse-frequency weights normalised so that a balanced set gets weight 1 per class."""
    counts = np.bincount(labels, minlength=2).astype(float)
    counts[counts == 0] = 1
    return torch.as_tensor(len(labels) / (2 * counts), dtype=torch.float32)


def evaluate(model, dataset, config: FitConfig) -> tuple[float, np.ndarray]:
    """Unweighted cross-entropy and P(malignant) of every item, in order."""
    from torch.utils.data import DataLoader

    model.eval()
    loader = DataLoader(dataset, batch_size=max(config.batch_size, 32), shuffle=False, num_workers=0)
    total, probabilities = 0.0, []
    with torch.inference_mode(), _autocast(config):
        for inputs, labels in loader:
            inputs, labels = _to_device(inputs, labels, config)
            logits = model(inputs).float()
            total += float(torch.nn.functional.cross_entropy(logits, labels, reduction="sum"))
            probabilities.append(torch.softmax(logits, dim=1)[:, 1].cpu().numpy())
    return total / max(len(dataset), 1), np.concatenate(probabilities).astype(np.float64)


def _auc(labels: np.ndarray, probabilities: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    if len(np.unique(labels)) < 2:
        return float("nan")
    return float(roc_auc_score(labels, probabilities))


def _autocast(config: FitConfig):
    if config.mixed_precision and config.device.startswith("cuda"):
        return torch.autocast("cuda", dtype=torch.float16)
    return torch.autocast("cpu", enabled=False)


def _to_device(inputs, labels, config: FitConfig):
    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
    inputs = inputs.to(config.device, non_blocking=True, memory_format=memory_format)
    return inputs, labels.to(config.device, non_blocking=True)


def _selection_score(row: dict, select_best: str) -> float:
    if select_best == "last":  # no selection: the weights the training ends with
        return row["epoch"]
    if select_best in ("val_auc", "average") and math.isfinite(row["val_auc"]):
        return row["val_auc"]
    return -row["val_loss"]  # AUC undefined (one class in validation) or loss asked for


def _weight_average(model, config: FitConfig):
    """The running equal-weight average of select_best "average" (None for another selection).

    use_buffers: the BatchNorm running statistics are averaged with the weights, so the average
    needs no extra pass over the training set to re-estimate them (torch's update_bn). The
    per-tensor average (avg_fn): torch's default on a GPU is a multi-tensor kernel that refuses
    BatchNorm's integer batch counters ("Integer division with addcdiv is no longer supported").
    """
    if config.select_best != "average":
        return None
    from torch.optim.swa_utils import AveragedModel, get_swa_avg_fn

    return AveragedModel(model, avg_fn=get_swa_avg_fn(), use_buffers=True)


def _averaged_count(config: FitConfig) -> int:
    """How many of the last epochs select_best "average" averages."""
    value = config.average_epochs
    return max(1, math.ceil(value * config.epochs)) if value < 1 else int(value)


def _save_checkpoint(path: Path, state: dict) -> None:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def fit(
    model,
    train_set,
    val_set,
    config: FitConfig,
    run_dir,
    *,
    resume: bool = True,
    on_epoch_end: Callable[[dict], None] | None = None,
    title: str = "",
) -> FitResult:
    """Train ``model`` in place; on return it holds the weights of the selected (best) epoch."""
    from tqdm.auto import tqdm

    run_dir = Path(run_dir)
    distributed, rank, world = _distributed()
    writer = rank == 0
    seed_everything(config.seed)
    if config.device.startswith("cuda"):
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
    model.to(config.device)
    frozen = freeze_leading(model, config.freeze_blocks)
    if config.channels_last:
        model.to(memory_format=torch.channels_last)
    averaged = _weight_average(model, config)
    network = model
    if distributed:
        from torch.nn.parallel import DistributedDataParallel

        network = DistributedDataParallel(
            model,
            device_ids=[torch.device(config.device).index] if config.device.startswith("cuda") else None,
        )
    generator = torch.Generator().manual_seed(config.seed)
    loader = _loader(train_set, config, generator, distributed, rank, world)
    weight = class_weights(train_set.labels.numpy()) if config.imbalance == "class_weights" else None
    criterion = torch.nn.CrossEntropyLoss(weight=weight.to(config.device) if weight is not None else None)
    optimizer = _optimizer([p for p in network.parameters() if p.requires_grad], config.optimizer)
    scheduler = _scheduler(optimizer, config.scheduler, config.epochs)
    scaler = torch.amp.GradScaler("cuda", enabled=config.mixed_precision and config.device.startswith("cuda"))
    val_labels = val_set.labels.numpy()

    state = {
        "epoch": 0,
        "history": [],
        "best_epoch": 0,
        "best_score": -math.inf,
        "best_state": None,
        "best_val_probability": None,
        "monitor_best": math.inf,
        "wait": 0,
        "stopped_early": False,
        "finished": False,
        "steps": 0,
        "train_seconds": 0.0,
        "averaged_epochs": [],
    }
    checkpoint_path = run_dir / CHECKPOINT
    if resume and checkpoint_path.is_file():
        saved = torch.load(checkpoint_path, map_location="cpu", weights_only=False)
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        if scheduler is not None and saved.get("scheduler"):
            scheduler.load_state_dict(saved["scheduler"])
        scaler.load_state_dict(saved["scaler"])
        torch.set_rng_state(saved["rng_torch"])
        np.random.set_state(saved["rng_numpy"])
        random.setstate(saved["rng_python"])
        generator.set_state(saved["rng_sampler"])
        # older checkpoints lack the counts and the average
        state = {"steps": 0, "train_seconds": 0.0, "averaged_epochs": [], **saved["loop"]}
        if averaged is not None and saved.get("average") is not None:
            averaged.load_state_dict(saved["average"])
        LOG.info("resuming %s after epoch %d", run_dir, state["epoch"])
    log = MetricsLog(run_dir, enabled=writer)
    epochs = tqdm(
        range(state["epoch"] + 1, config.epochs + 1),
        desc=title or "epochs",
        unit="epoch",
        initial=state["epoch"],
        total=config.epochs,
        disable=not (config.progress and writer),
    )
    rate = 0.0
    quiet = writer and not config.progress  # no bars (a log file, --no-progress): a line an epoch
    loop_started, first_epoch = time.perf_counter(), state["epoch"] + 1
    try:
        for epoch in [] if state["finished"] else epochs:
            if distributed:
                loader.sampler.set_epoch(epoch)
            network.train()
            for module in frozen:
                module.eval()
            started, seen, total_loss = time.perf_counter(), 0, 0.0
            budget_spent = False
            for inputs, labels in tqdm(
                loader,
                desc=f"epoch {epoch}",
                leave=False,
                unit="batch",
                disable=not (config.progress and writer),
            ):
                inputs, labels = _to_device(inputs, labels, config)
                optimizer.zero_grad(set_to_none=True)
                with _autocast(config):
                    loss = criterion(network(inputs).float(), labels)
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
                total_loss += float(loss.detach()) * len(labels)
                seen += len(labels)
                state["steps"] += 1
                budget_spent = _budget_spent(config, state["steps"], state["train_seconds"], started)
                if budget_spent:
                    break
            seconds = time.perf_counter() - started
            state["train_seconds"] += seconds
            rate = seen * world / seconds if seconds > 0 else 0.0
            val_loss, val_probability = evaluate(model, val_set, config)
            row = {
                "epoch": epoch,
                "train_loss": total_loss / max(seen, 1),
                "val_loss": val_loss,
                "val_auc": _auc(val_labels, val_probability),
                "lr": optimizer.param_groups[0]["lr"],
                "seconds": round(seconds, 3),
                "images_per_s": round(rate, 2),
            }
            state["history"].append(row)
            state["epoch"] = epoch
            if scheduler is not None:
                scheduler.step(val_loss) if config.scheduler == "plateau" else scheduler.step()
            score = _selection_score(row, config.select_best)
            if score > state["best_score"]:
                state.update(
                    best_score=score,
                    best_epoch=epoch,
                    best_val_probability=val_probability,
                    best_state={k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
                )
            if averaged is not None and epoch > config.epochs - _averaged_count(config):
                averaged.update_parameters(model)
                state["averaged_epochs"].append(epoch)
            monitored = row["val_loss"] if config.monitor == "val_loss" else -row["val_auc"]
            if monitored < state["monitor_best"] - config.min_delta:
                state.update(monitor_best=monitored, wait=0)
            else:
                state["wait"] += 1
            if state["wait"] >= config.patience:
                state.update(stopped_early=True, finished=True)
            if epoch == config.epochs or budget_spent:
                state["finished"] = True
            if writer:
                _save_checkpoint(
                    checkpoint_path,
                    {
                        "model": model.state_dict(),
                        "optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict() if scheduler is not None else None,
                        "scaler": scaler.state_dict(),
                        "rng_torch": torch.get_rng_state(),
                        "rng_numpy": np.random.get_state(),
                        "rng_python": random.getstate(),
                        "rng_sampler": generator.get_state(),
                        "average": averaged.state_dict() if averaged is not None else None,
                        "loop": state,
                    },
                )
                log.write(state["history"])
            epochs.set_postfix(
                val_loss=f"{val_loss:.3f}", val_auc=f"{row['val_auc']:.3f}", best=state["best_epoch"]
            )
            if quiet:
                per_epoch = (time.perf_counter() - loop_started) / (epoch - first_epoch + 1)
                LOG.info(
                    "%s: epoch %d/%d: train loss %.4f, val loss %.4f, val AUC %.3f, %.0f images/s, "
                    "ETA %s (at most: early stopping may end it sooner)",
                    title or run_dir, epoch, config.epochs, row["train_loss"], val_loss, row["val_auc"],
                    rate, _duration(per_epoch * (config.epochs - epoch)),
                )  # fmt: skip
            if on_epoch_end is not None:
                on_epoch_end(row)
            if state["finished"]:
                break
    finally:
        epochs.close()
        log.close()
    if state["best_state"] is None:
        raise RuntimeError("training ran no epoch; epochs must be at least 1")
    best_epoch, best_val_probability = state["best_epoch"], state["best_val_probability"]
    best_val_auc = state["history"][best_epoch - 1]["val_auc"]
    if averaged is not None and state["averaged_epochs"]:
        model.load_state_dict(averaged.module.state_dict())
        _, best_val_probability = evaluate(model, val_set, config)
        best_epoch, best_val_auc = state["averaged_epochs"][-1], _auc(val_labels, best_val_probability)
        LOG.info(
            "%s: kept the average of epochs %s, validation AUC %.3f",
            title or run_dir, _span(state["averaged_epochs"]), best_val_auc,
        )  # fmt: skip
    else:
        if averaged is not None:  # stopped (early or by its budget) before the averaged epochs
            LOG.warning(
                "%s: no epoch was averaged (the run ended at epoch %d, before the last %d of %d "
                "epochs, or it resumed a checkpoint written without averaging); kept the epoch "
                "with the best validation AUC instead",
                title or run_dir, state["epoch"], _averaged_count(config), config.epochs,
            )  # fmt: skip
        model.load_state_dict(state["best_state"])
    model.eval()
    if writer:
        plot_learning_curve(
            state["history"], run_dir / "learning_curve.png", best_epoch=best_epoch, title=title
        )
    rates = [row["images_per_s"] for row in state["history"] if row["images_per_s"] > 0]
    return FitResult(
        best_epoch=best_epoch,
        best_val_auc=best_val_auc,
        history=copy.deepcopy(state["history"]),
        stopped_early=state["stopped_early"],
        val_probability=np.asarray(best_val_probability),
        images_per_s=float(np.median(rates)) if rates else rate,
        steps=state.get("steps", 0),
        train_seconds=state.get("train_seconds", 0.0),
        averaged_epochs=list(state["averaged_epochs"]) if averaged is not None else [],
    )


def _duration(seconds: float) -> str:
    minutes = seconds / 60
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{minutes:.0f} min" if minutes < 90 else f"{minutes / 60:.1f} h"


def _span(epochs: list[int]) -> str:
    return f"{epochs[0]}-{epochs[-1]}" if len(epochs) > 1 else str(epochs[0])


def _budget_spent(config: FitConfig, steps: int, seconds_before: float, epoch_started: float) -> bool:
    if config.max_steps is not None and steps >= config.max_steps:
        return True
    spent = seconds_before + time.perf_counter() - epoch_started
    return config.max_seconds is not None and spent >= config.max_seconds
