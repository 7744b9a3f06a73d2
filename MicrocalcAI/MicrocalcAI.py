"""MicrocalcAI: benign or malignant microcalcifications, with saliency, annotation and retraining.

This file is only the Slicer glue: widgets in, one call of the Logic
(MicrocalcAI/Logic/microcalcai_logic) out, the answer shown. Everything the module decides is
in the Logic, which is tested outside Slicer on real MRML nodes against a real server.
"""

import logging
import os
import sys
from typing import Annotated

import qt
import slicer
from slicer import vtkMRMLMarkupsFiducialNode, vtkMRMLMarkupsROINode, vtkMRMLScalarVolumeNode
from slicer.parameterNodeWrapper import WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

MODULE_DIR = os.path.dirname(os.path.abspath(__file__))
# The Logic ships inside the module folder under a package name no other extension uses.
LOGIC_DIR = os.path.join(MODULE_DIR, "Logic")
if LOGIC_DIR not in sys.path:
    sys.path.insert(0, LOGIC_DIR)

TRAIN_POLL_MS = 2000


def ensureRequirements():
    """Install the client's few dependencies (Resources/requirements.txt) on first use."""
    path = os.path.join(MODULE_DIR, "Resources", "requirements.txt")
    packaging = getattr(slicer, "packaging", None)
    if packaging is not None and hasattr(packaging, "pip_ensure"):
        packaging.pip_ensure(packaging.load_requirements(path), requester="MicrocalcAI")
        return
    import importlib.util

    modules = {"requests": "requests", "requests-toolbelt": "requests_toolbelt", "pynrrd": "nrrd"}
    with open(path, encoding="utf-8") as handle:
        wanted = [line.split(";")[0].strip() for line in handle if line.strip() and not line.startswith("#")]
    missing = [r for r in wanted if importlib.util.find_spec(modules.get(_name(r), _name(r))) is None]
    if missing and slicer.util.confirmOkCancelDisplay(
        "MicrocalcAI needs these Python packages: {}. Install them now?".format(", ".join(missing))
    ):
        slicer.util.pip_install(missing)


def _name(requirement):
    for separator in "<>=!~[ ":
        requirement = requirement.split(separator)[0]
    return requirement


#
# Module
#


class MicrocalcAI(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "MicrocalcAI"
        self.parent.categories = ["Diagnosis"]
        self.parent.dependencies = ["Markups"]
        self.parent.contributors = ["MicrocalcAI contributors"]
        self.parent.helpText = (
            "Classify breast microcalcifications as benign or malignant with CNN models hosted on a "
            "MicrocalcAI (MONAI Label) server: place an ROI, read the probability of malignancy per model "
            "and for the ensemble, see where the models looked (saliency), label ROIs and retrain. "
            'See <a href="https://github.com/microcalcai/MicrocalcAI/blob/main/docs/slicer.md">the '
            "module's documentation</a>. Research use only: not a medical device."
        )
        self.parent.acknowledgementText = (
            "Built on 3D Slicer, MONAI Label, PyTorch and timm. Methods follow Kang et al. 2021, "
            "Mobini 2024, Arlan 2025 and Shia 2025."
        )


#
# Parameters (typed, saved with the scene)
#


@parameterNodeWrapper
class MicrocalcAIParameterNode:
    inputVolume: vtkMRMLScalarVolumeNode
    roiNode: vtkMRMLMarkupsROINode
    pointNode: vtkMRMLMarkupsFiducialNode
    useRoiBox: bool = True
    serverUrl: str = "http://127.0.0.1:8000"
    roiSizeMm: Annotated[float, WithinRange(1.0, 100.0)] = 10.0
    saliencyOpacity: Annotated[float, WithinRange(0.0, 1.0)] = 0.5
    showSaliency: bool = True
    trainEpochs: Annotated[int, WithinRange(1, 500)] = 5


#
# Widget: thin glue
#


class MicrocalcAIWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None):
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._trainTimer = None

    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/MicrocalcAI.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = MicrocalcAILogic()

        from microcalcai_logic.annotate import DISTRIBUTIONS, MORPHOLOGIES, display_name

        self.ui.morphologyComboBox.addItem("(not given)", "")
        for term in MORPHOLOGIES:
            self.ui.morphologyComboBox.addItem(display_name(term), term)
        self.ui.distributionComboBox.addItem("(not given)", "")
        for term in DISTRIBUTIONS:
            self.ui.distributionComboBox.addItem(display_name(term), term)

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)

        self.ui.connectButton.connect("clicked(bool)", self.onConnect)
        self.ui.classifyButton.connect("clicked(bool)", self.onClassify)
        self.ui.benignButton.connect("clicked(bool)", lambda: self.onAnnotate("benign"))
        self.ui.malignantButton.connect("clicked(bool)", lambda: self.onAnnotate("malignant"))
        self.ui.nextSampleButton.connect("clicked(bool)", self.onNextSample)
        self.ui.trainButton.connect("clicked(bool)", self.onTrain)
        self.ui.stopTrainingButton.connect("clicked(bool)", self.onStopTraining)
        self.ui.saliencyOpacitySlider.connect("valueChanged(double)", self.onSaliencyDisplay)
        self.ui.showSaliencyCheckBox.connect("toggled(bool)", self.onSaliencyDisplay)
        self.ui.modelComboBox.connect("currentTextChanged(QString)", self.onModelChosen)
        self.ui.roiSelector.connect("currentNodeChanged(vtkMRMLNode*)", self.ui.roiPlaceWidget.setCurrentNode)
        self.ui.pointSelector.connect(
            "currentNodeChanged(vtkMRMLNode*)", self.ui.pointPlaceWidget.setCurrentNode
        )

        self._trainTimer = qt.QTimer()
        self._trainTimer.setInterval(TRAIN_POLL_MS)
        self._trainTimer.connect("timeout()", self.onTrainTimer)

        self.initializeParameterNode()
        self.ui.serverUrlLineEdit.text = self.logic.core.settings.server_url

    def cleanup(self):
        self.removeObservers()
        if self._trainTimer is not None:
            self._trainTimer.stop()

    def enter(self):
        self.initializeParameterNode()

    def exit(self):
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None

    def onSceneStartClose(self, caller, event):
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event):
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self):
        from microcalcai_logic.active_learning import ROI_ROLE
        from microcalcai_logic.volumes import singleton

        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.inputVolume:
            first = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
            if first:
                self._parameterNode.inputVolume = first
        # Ready-made marks to place: the ROI box is the one Next sample also uses.
        if not self._parameterNode.roiNode:
            self._parameterNode.roiNode = singleton(
                slicer.mrmlScene, "vtkMRMLMarkupsROINode", ROI_ROLE, "MicrocalcAI ROI"
            )
        if not self._parameterNode.pointNode:
            point = singleton(slicer.mrmlScene, "vtkMRMLMarkupsFiducialNode", "point", "MicrocalcAI point")
            point.SetMaximumNumberOfControlPoints(1)
            self._parameterNode.pointNode = point

    def setParameterNode(self, inputParameterNode):
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)

    # -- actions: collect inputs, call the Logic, show the answer ---------------------------
    def _run(self, action, busyText):
        """Run one Logic call -> (succeeded, value); a failure becomes one sentence in a
        dialog and in the status line, never a traceback."""
        from microcalcai_logic.errors import LogicError, user_message

        self.ui.statusLabel.text = busyText
        slicer.app.setOverrideCursor(qt.Qt.WaitCursor)
        try:
            return True, action()
        except Exception as error:  # every failure reaches the user as a sentence
            if not isinstance(error, LogicError):
                logging.exception("MicrocalcAI: %s", busyText)
            self.ui.statusLabel.text = user_message(error)
            slicer.util.errorDisplay(user_message(error), windowTitle="MicrocalcAI")
            return False, None
        finally:
            slicer.app.restoreOverrideCursor()

    def onConnect(self):
        ensureRequirements()
        ok, info = self._run(lambda: self.logic.core.connect(self.ui.serverUrlLineEdit.text), "Connecting...")
        if not ok:
            return
        self._parameterNode.serverUrl = info.url
        settings = self.logic.core.settings
        _fill(self.ui.modelComboBox, info.model_names(), settings.model)
        _fill(
            self.ui.strategyComboBox,
            list(info.strategies) or ["uncertain", "random", "first"],
            settings.strategy,
        )
        hosted = [name for name in info.model_names() if name != "ensemble"]
        _fill(self.ui.trainModelComboBox, hosted, settings.train_model)
        self.ui.statusLabel.text = f"Connected to {info.url} ({len(hosted)} models)."

    def onModelChosen(self, name):
        if name:
            self.logic.core.settings.model = name

    def onClassify(self):
        p = self._parameterNode
        core = self.logic.core
        point = None if p.useRoiBox else core.point_position(p.pointNode)
        ok, result = self._run(
            lambda: core.classify(
                p.inputVolume,
                roi_node=p.roiNode if p.useRoiBox else None,
                point_ras=point,
                size_mm=p.roiSizeMm,
            ),
            "Classifying...",
        )
        if not ok:
            return
        self.ui.resultsTableView.setMRMLTableNode(core.results_table())
        self.ui.statusLabel.text = "{}: P(malignant) = {:.3f} (threshold {}) -> {}".format(
            result.model,
            result.probability,
            f"{result.threshold:.2f}" if result.threshold is not None else "n/a",
            result.decision,
        )
        self.onSaliencyDisplay()

    def onSaliencyDisplay(self, *unused):
        self.logic.core.set_saliency_display(
            opacity=self.ui.saliencyOpacitySlider.value, visible=self.ui.showSaliencyCheckBox.checked
        )

    def onAnnotate(self, label):
        core = self.logic.core
        ok, annotations = self._run(
            lambda: core.annotate(
                label,
                morphology=self.ui.morphologyComboBox.currentData,
                distribution=self.ui.distributionComboBox.currentData,
                comment=self.ui.commentLineEdit.text,
            ),
            "Saving the label...",
        )
        if ok:
            self.ui.statusLabel.text = (
                f"Saved '{label}'. This image now has {len(annotations)} labeled ROI(s)."
            )

    def onNextSample(self):
        core = self.logic.core
        core.settings.strategy = self.ui.strategyComboBox.currentText or core.settings.strategy
        ok, sample = self._run(
            lambda: core.next_sample(roi_node=self._parameterNode.roiNode), "Finding the next sample..."
        )
        if not ok:
            return
        if sample is None:
            self.ui.statusLabel.text = "Every candidate ROI is labeled: nothing left to annotate."
            return
        self._parameterNode.inputVolume = core.volume
        self._parameterNode.useRoiBox = True
        slicer.util.setSliceViewerLayers(background=core.volume, foreground=None, fit=True)
        self.ui.statusLabel.text = "Sample {} ({}, score {}).".format(
            sample.image_id, sample.strategy, f"{sample.score:.3f}" if sample.score is not None else "n/a"
        )

    def onTrain(self):
        core = self.logic.core
        model = self.ui.trainModelComboBox.currentText
        ok, _ = self._run(
            lambda: core.start_training(model, max_epochs=self._parameterNode.trainEpochs),
            "Starting training...",
        )
        if ok:
            core.settings.train_model = model
            self.ui.trainProgressBar.value = 0
            self._trainTimer.start()

    def onTrainTimer(self):
        from microcalcai_logic.errors import user_message

        try:
            progress = self.logic.core.training_progress()
        except Exception as error:  # the timer must not raise into Qt's event loop
            self.ui.trainStatusLabel.text = user_message(error)
            self._trainTimer.stop()
            return
        self.ui.trainProgressBar.value = int(round(100 * progress.progress))
        self.ui.trainStatusLabel.text = progress.summary()
        if not progress.running:
            self._trainTimer.stop()

    def onStopTraining(self):
        ok, _ = self._run(self.logic.core.stop_training, "Stopping training...")
        if ok:
            self.onTrainTimer()


def _fill(comboBox, names, current):
    comboBox.clear()
    for name in names:
        comboBox.addItem(name)
    if current in names:
        comboBox.setCurrentIndex(comboBox.findText(current))


#
# Logic: the module's parameter node around the shared Logic
#


class MicrocalcAILogic(ScriptedLoadableModuleLogic):
    """Slicer's module logic: owns the parameter node; `core` is the shared, Qt-free Logic."""

    def __init__(self):
        ScriptedLoadableModuleLogic.__init__(self)
        from microcalcai_logic import MicrocalcAILogic as CoreLogic

        self.core = CoreLogic(slicer.mrmlScene)

    def getParameterNode(self):
        return MicrocalcAIParameterNode(super().getParameterNode())


#
# Self-test: the Logic end to end against a server, inside Slicer
#


class MicrocalcAITest(ScriptedLoadableModuleTest):
    """Needs a running server: MICROCALCAI_SERVER_URL, or the address the module remembers."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_EndToEnd()

    def test_EndToEnd(self):
        ensureRequirements()
        from microcalcai_logic import MicrocalcAILogic as CoreLogic
        from microcalcai_logic import selfcheck

        core = CoreLogic(slicer.mrmlScene)
        url = os.environ.get("MICROCALCAI_SERVER_URL")
        if url:
            core.settings.server_url = url
        self.delayDisplay(f"MicrocalcAI self-test against {core.settings.server_url}")
        outcome = selfcheck.run(core, log=self.delayDisplay)
        self.assertGreaterEqual(outcome["rows"], 1)
        self.assertTrue(0.0 <= outcome["probability"] <= 1.0)
        sliceCompositeNodes = slicer.util.getNodesByClass("vtkMRMLSliceCompositeNode")
        saliency = core.saliency_node()
        self.assertTrue(any(n.GetForegroundVolumeID() == saliency.GetID() for n in sliceCompositeNodes))
        self.delayDisplay("MicrocalcAI self-test passed")
