"""Render the Slicer module's icon and a picture of its panel (docs/slicer.md).

    .venv/bin/python docs/images/render_slicer_figures.py icon
    .venv/bin/python docs/images/render_slicer_figures.py panel   # also needs PySide6-Essentials

The panel is the real MicrocalcAI.ui, loaded by Qt's own loader with Slicer's custom widgets
(ctk, qMRML) replaced by the plain Qt widgets they derive from, since Slicer's are not
available outside Slicer; so the layout, texts and order are exactly the module's.
"""

import os
import re
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
UI = ROOT / "MicrocalcAI" / "Resources" / "UI" / "MicrocalcAI.ui"
ICON = ROOT / "MicrocalcAI" / "Resources" / "Icons" / "MicrocalcAI.png"
PANEL = ROOT / "docs" / "images" / "slicer-panel.png"

STAND_INS = {
    "qMRMLWidget": "QWidget",
    "ctkCollapsibleButton": "QGroupBox",
    "ctkDoubleSpinBox": "QDoubleSpinBox",
    "ctkSliderWidget": "QDoubleSpinBox",
    "qMRMLNodeComboBox": "QComboBox",
    "qMRMLTableView": "QTableWidget",
    "qSlicerMarkupsPlaceWidget": "QToolButton",
}


def render_icon(path: Path = ICON) -> None:
    """128 x 128: a breast outline, a cluster of calcifications in an ROI box, warm saliency."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.patches import Rectangle

    fig = plt.figure(figsize=(1.28, 1.28), dpi=100)
    ax = fig.add_axes([0, 0, 1, 1])
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.axis("off")
    ax.add_patch(Rectangle((0, 0), 1, 1, color="#101418"))
    t = np.linspace(-np.pi / 2, np.pi / 2, 200)
    ax.fill(
        np.r_[0.08, 0.08 + 0.62 * np.cos(t), 0.08], np.r_[0.04, 0.5 + 0.46 * np.sin(t), 0.96], color="#8d8f93"
    )
    yy, xx = np.mgrid[0:1:200j, 0:1:200j]
    heat = np.exp(-((xx - 0.52) ** 2 + (yy - 0.5) ** 2) / 0.012)
    ax.imshow(
        np.ma.masked_less(heat, 0.2), extent=(0, 1, 0, 1), origin="lower", cmap="hot", alpha=0.75, vmin=0
    )
    rng = np.random.default_rng(7)
    dots = rng.normal([0.52, 0.5], 0.045, size=(14, 2))
    ax.scatter(dots[:, 0], dots[:, 1], s=rng.uniform(2, 7, 14), color="white", linewidths=0)
    ax.add_patch(Rectangle((0.36, 0.34), 0.32, 0.32, fill=False, edgecolor="#ffd400", linewidth=2.2))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, facecolor="#101418")
    plt.close(fig)


def render_panel(path: Path = PANEL) -> None:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from microcalcai_logic.results import COLUMNS
    from PySide6.QtCore import QFile
    from PySide6.QtUiTools import QUiLoader
    from PySide6.QtWidgets import QApplication, QComboBox, QTableWidget, QTableWidgetItem, QToolButton

    text = UI.read_text(encoding="utf-8")
    text = re.sub(r"<customwidgets>.*</customwidgets>", "", text, flags=re.S)
    text = re.sub(r"<connections>.*</connections>", "", text, flags=re.S)  # MRML scene signals
    for custom, stand_in in STAND_INS.items():
        text = text.replace(f'class="{custom}"', f'class="{stand_in}"')
    # ctk's collapsible button shows its "text" where a group box shows its "title".
    text = re.sub(r'(<widget class="QGroupBox" name="\w+">\s*<property name=")text(")', r"\1title\2", text)
    app = QApplication.instance() or QApplication(sys.argv)
    with tempfile.TemporaryDirectory() as folder:
        copy = Path(folder) / "panel.ui"
        copy.write_text(text, encoding="utf-8")
        handle = QFile(str(copy))
        handle.open(QFile.ReadOnly)
        panel = QUiLoader().load(handle)
        handle.close()
    examples = {
        "inputVolumeSelector": "1-131 (CBIS-DDSM, benign case)",
        "roiSelector": "MicrocalcAI ROI",
        "pointSelector": "(none)",
        "modelComboBox": "ensemble",
        "morphologyComboBox": "Fine pleomorphic",
        "distributionComboBox": "Grouped",
        "strategyComboBox": "auto",
        "trainModelComboBox": "lite0-phantom-a",
    }
    for name, value in examples.items():
        panel.findChild(QComboBox, name).addItem(value)
    panel.findChild(QToolButton, "roiPlaceWidget").setText("Place ROI")
    panel.findChild(QToolButton, "pointPlaceWidget").setText("Place point")
    table = panel.findChild(QTableWidget, "resultsTableView")
    columns = list(COLUMNS)  # the results table's columns as the module's Logic writes them
    table.setColumnCount(len(columns))
    table.setHorizontalHeaderLabels(columns)
    table.setRowCount(1)
    table.setItem(0, 0, QTableWidgetItem("(after Classify: one row per model + ensemble)"))
    table.setSpan(0, 0, 1, len(columns))
    table.resizeColumnsToContents()
    table.setFixedHeight(90)
    panel.resize(420, panel.sizeHint().height())
    panel.setStyleSheet("QWidget { font-size: 11px; }")
    path.parent.mkdir(parents=True, exist_ok=True)
    assert panel.grab().save(str(path)), f"could not write {path}"
    app.processEvents()


if __name__ == "__main__":
    what = sys.argv[1:] or ["icon", "panel"]
    if "icon" in what:
        render_icon()
    if "panel" in what:
        render_panel()
