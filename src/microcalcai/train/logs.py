"""Per-epoch metrics to CSV and TensorBoard, and the learning-curve figure at the end."""

from __future__ import annotations

import csv
import io
import logging
import math
from pathlib import Path

from microcalcai.atomic import atomic_write_bytes, atomic_write_text

LOG = logging.getLogger(__name__)
COLUMNS = ("epoch", "train_loss", "val_loss", "val_auc", "lr", "seconds", "images_per_s")


class MetricsLog:
    """metrics.csv (rewritten whole each epoch, so a resumed run never holds duplicate rows) + TensorBoard."""

    def __init__(self, run_dir: Path, *, enabled: bool = True):
        self.run_dir = Path(run_dir)
        self.enabled = enabled
        self._writer = None
        if enabled:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._writer = SummaryWriter(log_dir=str(self.run_dir / "tensorboard"))
            except ImportError:  # tensorboard is a declared dependency; keep training without it
                LOG.warning("tensorboard is not installed; metrics go to metrics.csv only")

    def write(self, history: list[dict]) -> None:
        if not self.enabled:
            return
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(history)
        atomic_write_text(self.run_dir / "metrics.csv", buffer.getvalue())
        if self._writer is not None and history:
            row = history[-1]
            for key in COLUMNS[1:]:
                value = row.get(key)
                if isinstance(value, (int, float)) and math.isfinite(value):
                    group = "loss" if key.endswith("loss") else "metrics"
                    self._writer.add_scalar(f"{group}/{key}", value, row["epoch"])
            self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


def plot_learning_curve(
    history: list[dict], path: Path, *, best_epoch: int | None = None, title: str = ""
) -> Path:
    """Training and validation loss and validation AUC by epoch, the selected epoch marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [row["epoch"] for row in history]
    fig, (ax_loss, ax_auc) = plt.subplots(1, 2, figsize=(10, 4), dpi=110)
    ax_loss.plot(epochs, [row["train_loss"] for row in history], "o-", label="training loss")
    ax_loss.plot(epochs, [row["val_loss"] for row in history], "s-", label="validation loss")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("cross-entropy")
    ax_auc.plot(epochs, [row["val_auc"] for row in history], "o-", color="tab:green", label="validation AUC")
    ax_auc.set_xlabel("epoch")
    ax_auc.set_ylabel("AUC")
    ax_auc.set_ylim(0, 1.02)
    ax_auc.axhline(0.5, color="grey", lw=0.8, ls=":")
    for axis in (ax_loss, ax_auc):
        if best_epoch is not None:
            axis.axvline(best_epoch, color="tab:red", ls="--", lw=1, label=f"selected epoch {best_epoch}")
        axis.legend(loc="best", fontsize=8)
        axis.grid(alpha=0.3)
    fig.suptitle(title or "learning curve")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return atomic_write_bytes(path, buffer.getvalue())
