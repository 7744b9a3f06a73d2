"""MicrocalcAI: benign or malignant microcalcifications, with saliency, annotation and retraining.

This file is only the Slicer glue: widgets in, one call of the Logic
(MicrocalcAI/Logic/microcalcai_logic) out, the answer shown. Everything the module decides
(which image and ROI a label is for, which buttons can be pressed, whether an image may be sent,
what is sent) is in the Logic, which is tested outside Slicer on real MRML nodes against a real
server. Server calls run on the Logic's worker thread; a QTimer brings their answers back here.
"""

import logging
import os
import sys
from typing import Annotated

import qt
import slicer
import vtk
from slicer import vtkMRMLMarkupsFiducialNode, vtkMRMLMarkupsROINode, vtkMRMLScalarVolumeNode
from slicer.parameterNodeWrapper import WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

try:
    from slicer.i18n import tr as _
    from slicer.i18n import translate
except ImportError:  # Slicer before 5.4 has no translation helpers: show the English text

    def _(text):
        return text

    def translate(context, text):
        return text


MODULE_DIR = os.path.dirname(os.path.abspath(__file__))
# The Logic ships inside the module folder under a package name no other extension uses.
LOGIC_DIR = os.path.join(MODULE_DIR, "Logic")
LOGIC_PACKAGE = "microcalcai_logic"
if LOGIC_DIR not in sys.path:
    sys.path.insert(0, LOGIC_DIR)

TASK_POLL_MS = 100  # how often a running server call is checked (cheap: a queue read)
TRAIN_POLL_MS = 2000  # how often the training's progress is asked for (a server call)


#
# Module
#


class MicrocalcAI(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("MicrocalcAI")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Diagnosis")]
        self.parent.dependencies = ["Markups"]
        self.parent.contributors = ["MicrocalcAI contributors"]
        self.parent.helpText = _(
            "Classify breast microcalcifications as benign or malignant with CNN models hosted on a "
            "MicrocalcAI (MONAI Label) server: place an ROI, read the probability of malignancy per model "
            "and for the ensemble, see where the models looked (saliency), label ROIs and retrain. With a "
            "whole-image model, Exam (BAC) reads the four views of an exam for breast arterial "
            "calcification: the exam's verdict, each view's probability and its map. "
            'See <a href="https://github.com/microcalcai/MicrocalcAI/blob/main/docs/slicer.md">the '
            "module's documentation</a>. Research use only: not a medical device."
        )
        self.parent.acknowledgementText = _(
            "Built on 3D Slicer, MONAI Label, PyTorch and timm. Methods follow Kang et al. 2021, "
            "Mobini 2024, Arlan 2025 and Shia 2025."
        )


#
# Parameters of the scene (saved with it). The user's preferences (server address and its
# history, model, strategy, consent) are application settings, kept by the Logic.
#


@parameterNodeWrapper
class MicrocalcAIParameterNode:
    inputVolume: vtkMRMLScalarVolumeNode
    roiNode: vtkMRMLMarkupsROINode
    pointNode: vtkMRMLMarkupsFiducialNode
    useRoiBox: bool = True
    roiSizeMm: Annotated[float, WithinRange(1.0, 100.0)] = 10.0
    saliencyOpacity: Annotated[float, WithinRange(0.0, 1.0)] = 0.5
    showSaliency: bool = True
    trainEpochs: Annotated[int, WithinRange(1, 500)] = 10


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
        self._observedMarks = []
        self._taskTimer = None
        self._trainTimer = None

    @property
    def core(self):
        return self.logic.core

    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/MicrocalcAI.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = MicrocalcAIModuleLogic()

        from microcalcai_logic.annotate import display_name
        from microcalcai_logic.contract import DISTRIBUTIONS, MORPHOLOGIES
        from microcalcai_logic.requirements import missing_requirements

        self.ui.morphologyComboBox.addItem(_("(not given)"), "")
        for term in MORPHOLOGIES:
            self.ui.morphologyComboBox.addItem(display_name(term), term)
        self.ui.distributionComboBox.addItem(_("(not given)"), "")
        for term in DISTRIBUTIONS:
            self.ui.distributionComboBox.addItem(display_name(term), term)

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)

        self.ui.connectButton.connect("clicked(bool)", self.onConnect)
        self.ui.classifyButton.connect("clicked(bool)", self.onClassify)
        self.ui.savePacsButton.connect("clicked(bool)", self.onSaveToPacs)
        self.ui.examButton.connect("clicked(bool)", self.onExam)
        self.ui.classifyViewButton.connect("clicked(bool)", self.onClassifyView)
        self.ui.examViewComboBox.connect("currentIndexChanged(int)", self.onExamViewChosen)
        self.ui.benignButton.connect("clicked(bool)", lambda: self.onAnnotate("benign"))
        self.ui.malignantButton.connect("clicked(bool)", lambda: self.onAnnotate("malignant"))
        self.ui.nextSampleButton.connect("clicked(bool)", self.onNextSample)
        self.ui.trainButton.connect("clicked(bool)", self.onTrain)
        self.ui.stopTrainingButton.connect("clicked(bool)", self.onStopTraining)
        self.ui.cancelButton.connect("clicked(bool)", self.onCancel)
        self.ui.uploadConsentCheckBox.connect("toggled(bool)", self.onConsentToggled)
        self.ui.saliencyOpacitySlider.connect("valueChanged(double)", self.onSaliencyDisplay)
        self.ui.showSaliencyCheckBox.connect("toggled(bool)", self.onSaliencyDisplay)
        self.ui.modelComboBox.connect("currentTextChanged(QString)", self.onModelChosen)
        self.ui.inputVolumeSelector.connect("currentNodeChanged(vtkMRMLNode*)", self.onVolumeChosen)
        self.ui.roiSelector.connect("currentNodeChanged(vtkMRMLNode*)", self.ui.roiPlaceWidget.setCurrentNode)
        self.ui.pointSelector.connect(
            "currentNodeChanged(vtkMRMLNode*)", self.ui.pointPlaceWidget.setCurrentNode
        )

        self._taskTimer = qt.QTimer()
        self._taskTimer.setInterval(TASK_POLL_MS)
        self._taskTimer.connect("timeout()", self.onTaskTimer)
        self._trainTimer = qt.QTimer()
        self._trainTimer.setInterval(TRAIN_POLL_MS)
        self._trainTimer.connect("timeout()", self.onTrainTimer)

        self.core.missing_requirements = missing_requirements()
        self.ui.serverUrlLineEdit.text = self.core.settings.server_url
        self.ui.serverUrlLineEdit.setCompleter(qt.QCompleter(self.core.settings.server_history))
        self.initializeParameterNode()
        self.updateControls()

    def cleanup(self):
        self.removeObservers()
        for timer in (self._taskTimer, self._trainTimer):
            if timer is not None:
                timer.stop()

    def onReload(self):
        # Slicer's Reload re-reads this file only: drop the Logic package too, so the new widget
        # imports its edited modules.
        for name in [n for n in sys.modules if n == LOGIC_PACKAGE or n.startswith(LOGIC_PACKAGE + ".")]:
            del sys.modules[name]
        ScriptedLoadableModuleWidget.onReload(self)

    def enter(self):
        self.initializeParameterNode()

    def exit(self):
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.updateControls)

    def onSceneStartClose(self, caller, event):
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event):
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self):
        from microcalcai_logic import viewer

        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.inputVolume:
            first = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
            if first and not first.GetHideFromEditors():
                self._parameterNode.inputVolume = first
        # Ready-made marks to place: the ROI box is the one Next sample also uses.
        if not self._parameterNode.roiNode:
            self._parameterNode.roiNode = viewer.roi_box_node(slicer.mrmlScene)
        if not self._parameterNode.pointNode:
            self._parameterNode.pointNode = viewer.point_node(slicer.mrmlScene)

    def setParameterNode(self, inputParameterNode):
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.updateControls)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.updateControls)
        self._observeMarks()
        self.updateControls()

    def _observeMarks(self):
        """Placing or moving the box or the point changes which buttons can be pressed."""
        for node, event in self._observedMarks:
            self.removeObserver(node, event, self.updateControls)
        self._observedMarks = []
        p = self._parameterNode
        for node in (p.roiNode, p.pointNode) if p else ():
            if node is None:
                continue
            for event in (
                slicer.vtkMRMLMarkupsNode.PointPositionDefinedEvent,
                slicer.vtkMRMLMarkupsNode.PointModifiedEvent,
                slicer.vtkMRMLMarkupsNode.PointRemovedEvent,
            ):
                self.addObserver(node, event, self.updateControls)
                self._observedMarks.append((node, event))

    # -- what is on screen ------------------------------------------------------------------
    def _marks(self):
        """(volume, roi box node, point RAS, size mm) as the panel shows them now."""
        p = self._parameterNode
        point = None if p.useRoiBox else self.core.point_position(p.pointNode)
        return p.inputVolume, (p.roiNode if p.useRoiBox else None), point, p.roiSizeMm

    def updateControls(self, *unused):
        """Buttons enabled as the Logic says; the first reason a button is off is the status line."""
        if self._parameterNode is None or self.logic is None:
            return
        p = self._parameterNode
        if {node for node, _event in self._observedMarks} != {n for n in (p.roiNode, p.pointNode) if n}:
            self._observeMarks()  # another box or point list was chosen
        volume, box, point, _size = self._marks()
        controls = self.core.controls(volume, box, point, use_box=self._parameterNode.useRoiBox)
        for button, control in (
            (self.ui.connectButton, controls.connect),
            (self.ui.classifyButton, controls.classify),
            (self.ui.savePacsButton, controls.save_pacs),
            (self.ui.examButton, controls.exam),
            (self.ui.classifyViewButton, controls.classify_view),
            (self.ui.benignButton, controls.annotate),
            (self.ui.malignantButton, controls.annotate),
            (self.ui.nextSampleButton, controls.next_sample),
            (self.ui.trainButton, controls.train),
            (self.ui.stopTrainingButton, controls.stop_training),
            (self.ui.cancelButton, controls.cancel),
            (self.ui.saliencyOpacitySlider, controls.saliency),
            (self.ui.showSaliencyCheckBox, controls.saliency),
        ):
            button.enabled = control.enabled
        self.ui.uploadConsentCheckBox.enabled = self.core.client is not None and not controls.cancel.enabled
        self.ui.busyProgressBar.visible = controls.cancel.enabled
        if not controls.cancel.enabled and controls.first_reason():
            self.ui.statusLabel.text = controls.first_reason()

    # -- running the Logic's tasks ----------------------------------------------------------
    def _submit(self, submit, onDone):
        """Start one Logic action on its worker thread. Routine preconditions (no ROI, not
        connected) become the status line; asking before an upload is a question; anything
        else is Slicer's error display."""
        from microcalcai_logic import LogicError
        from microcalcai_logic.logic import ConsentRequired

        try:
            try:
                task = submit(lambda value: self._done(onDone, value), self._failed)
            except ConsentRequired as question:
                if not self._askConsent(str(question)):
                    return
                task = submit(lambda value: self._done(onDone, value), self._failed)
        except LogicError as error:
            self.ui.statusLabel.text = str(error)
            return
        except Exception as error:
            self._failed(error)
            return
        self.ui.statusLabel.text = task.message + "..."
        self._taskTimer.start()
        self.updateControls()

    def _done(self, onDone, value):
        try:
            with slicer.util.tryWithErrorDisplay(
                _("MicrocalcAI could not show the answer."), waitCursor=True
            ):
                onDone(value)
        except Exception:
            logging.exception("MicrocalcAI: showing an answer failed")
        self.updateControls()

    def _failed(self, error):
        from microcalcai_logic import LogicError, ServerError
        from microcalcai_logic.errors import user_message

        self.ui.statusLabel.text = user_message(error)
        if isinstance(error, LogicError) and not isinstance(error, ServerError):
            self.updateControls()
            return  # a routine precondition: the status line says what to do
        try:
            with slicer.util.tryWithErrorDisplay(_("MicrocalcAI: the request did not complete.")):
                raise error
        except Exception:
            if not isinstance(error, LogicError):
                logging.exception("MicrocalcAI: unexpected error")
        self.updateControls()

    def onTaskTimer(self):
        running = self.core.tasks.poll()
        task = self.core.tasks.current
        if task is not None:
            self.ui.statusLabel.text = task.message + "..."
            if task.fraction is not None:
                self.ui.busyProgressBar.maximum = 100
                self.ui.busyProgressBar.value = int(100 * task.fraction)
            else:
                self.ui.busyProgressBar.maximum = 0  # a busy indicator
        if not running:
            self._taskTimer.stop()
            self.updateControls()

    def onCancel(self):
        self.core.tasks.cancel()
        self.ui.statusLabel.text = _("Cancelled: the server's answer, if it comes, is dropped.")
        self.updateControls()

    def _askConsent(self, question):
        allowed = slicer.util.confirmYesNoDisplay(question, windowTitle=_("MicrocalcAI: send images?"))
        self.core.set_upload_consent(bool(allowed))
        self._showConsent()
        if not allowed:
            self.ui.statusLabel.text = _(
                "Nothing was sent. Images from the server (Next sample) can be used."
            )
        return bool(allowed)

    def _showConsent(self):
        wasBlocked = self.ui.uploadConsentCheckBox.blockSignals(True)
        self.ui.uploadConsentCheckBox.checked = self.core.client is not None and bool(
            self.core.upload_consent()
        )
        self.ui.uploadConsentCheckBox.blockSignals(wasBlocked)

    def onConsentToggled(self, checked):
        if self.core.client is not None:
            self.core.set_upload_consent(bool(checked))

    # -- actions ------------------------------------------------------------------------------
    def _ensureRequirements(self):
        """Install what Resources/requirements.txt lists and this Python lacks (after asking).
        False when something is still missing; the buttons that need it stay disabled."""
        from microcalcai_logic.requirements import missing_requirements, offline_instructions

        missing = self.core.missing_requirements = missing_requirements()
        if not missing:
            return True
        if not slicer.util.confirmOkCancelDisplay(
            _("MicrocalcAI needs these Python packages: {names}. Install them now?").format(
                names=", ".join(missing)
            ),
            windowTitle=_("MicrocalcAI"),
        ):
            self.ui.statusLabel.text = offline_instructions(missing)
            self.updateControls()
            return False
        try:
            with slicer.util.tryWithErrorDisplay(
                _("Installing failed. {help}").format(help=offline_instructions(missing)), waitCursor=True
            ):
                slicer.util.pip_install(missing)
        except Exception:
            logging.exception("MicrocalcAI: installing %s failed", missing)
        missing = self.core.missing_requirements = missing_requirements()
        if missing:
            self.ui.statusLabel.text = offline_instructions(missing)
        self.updateControls()
        return not missing

    def onConnect(self):
        if not self._ensureRequirements():
            return

        def shown(info):
            settings = self.core.settings
            _fill(self.ui.modelComboBox, info.model_names(), settings.model)
            _fill(
                self.ui.strategyComboBox,
                list(info.strategies) or ["auto", "random", "uncertain", "typical", "first"],
                settings.strategy,
            )
            hosted = self.core.trainable_models()
            _fill(self.ui.trainModelComboBox, hosted, settings.train_model)
            self.ui.serverUrlLineEdit.text = info.url
            self.ui.serverUrlLineEdit.setCompleter(qt.QCompleter(settings.server_history))
            self._showConsent()
            self.ui.statusLabel.text = _("Connected to {url} ({count} models).").format(
                url=info.url, count=len([name for name in info.models if name != "ensemble"])
            )
            notice = info.demonstration_notice()
            if notice:
                self.ui.statusLabel.text += " " + notice + "."
            if self.core.training_running:
                self.ui.trainStatusLabel.text = _("A training of {model} is running.").format(
                    model=self.core.monitor.model
                )
                self._trainTimer.start()

        url = self.ui.serverUrlLineEdit.text
        self._submit(lambda done, failed: self.core.submit_connect(url, done, failed), shown)

    def onModelChosen(self, name):
        if name:
            self.core.settings.model = name
            self.core.save_settings()
        self.updateControls()  # a whole-image model swaps Classify for Exam (BAC) and Classify view

    def onVolumeChosen(self, volume):
        # Another image: the previous image's map and table go.
        self.core.select_volume(volume)
        self.updateControls()

    def onClassify(self):
        volume, box, point, size = self._marks()

        def shown(result):
            from microcalcai_logic.certainty import summary

            self.ui.resultsTableView.setMRMLTableNode(self.core.results_table())
            self.ui.statusLabel.text = _(
                "{model}: P(malignant) = {p:.3f} (threshold {t}) -> {decision}"
            ).format(
                model=result.model,
                p=result.probability,
                t=f"{result.threshold:.2f}" if result.threshold is not None else "n/a",
                decision=result.decision,
            ) + summary(result.certainty)
            self.onSaliencyDisplay()

        self._submit(
            lambda done, failed: self.core.submit_classify(
                done, failed, volume, roi_node=box, point_ras=point, size_mm=size
            ),
            shown,
        )

    def onSaveToPacs(self):
        volume, box, point, size = self._marks()

        def shown(saved):
            self.ui.resultsTableView.setMRMLTableNode(self.core.results_table())
            self.ui.statusLabel.text = saved.message
            self.onSaliencyDisplay()

        self._submit(
            lambda done, failed: self.core.submit_save_to_pacs(
                done, failed, volume, roi_node=box, point_ras=point, size_mm=size
            ),
            shown,
        )

    def onExam(self):
        volume = self._parameterNode.inputVolume

        def shown(exam):
            self.ui.resultsTableView.setMRMLTableNode(self.core.exam_table())
            self.ui.examVerdictLabel.text = exam.verdict
            self.ui.statusLabel.text = exam.verdict
            wasBlocked = self.ui.examViewComboBox.blockSignals(True)
            self.ui.examViewComboBox.clear()
            for view in exam.views:
                self.ui.examViewComboBox.addItem(view.view or view.image_id, view.image_id)
            self.ui.examViewComboBox.setCurrentIndex(
                self.ui.examViewComboBox.findData(self.core.exam_shown())
            )
            self.ui.examViewComboBox.blockSignals(wasBlocked)
            self.onSaliencyDisplay()

        self._submit(lambda done, failed: self.core.submit_exam(done, failed, volume), shown)

    def onClassifyView(self):
        volume = self._parameterNode.inputVolume

        def shown(view):
            self.ui.resultsTableView.setMRMLTableNode(self.core.exam_table())
            self.ui.examVerdictLabel.text = ""
            self.ui.statusLabel.text = view.summary
            self.onSaliencyDisplay()

        self._submit(lambda done, failed: self.core.submit_classify_view(done, failed, volume), shown)

    def onExamViewChosen(self, index):
        """Show another view of the exam with its map (scene only: no server call)."""
        from microcalcai_logic import LogicError

        imageId = self.ui.examViewComboBox.itemData(index)
        if not imageId:
            return
        try:
            volume = self.core.show_exam_view(imageId)
        except LogicError as error:
            self.ui.statusLabel.text = str(error)
            return
        self._parameterNode.inputVolume = volume
        slicer.util.setSliceViewerLayers(background=volume, fit=True)
        self.onSaliencyDisplay()

    def onSaliencyDisplay(self, *unused):
        # The controls' own values: this slot may run before the parameter node has followed them.
        self.core.set_saliency_display(
            opacity=self.ui.saliencyOpacitySlider.value, visible=self.ui.showSaliencyCheckBox.checked
        )

    def onAnnotate(self, label):
        volume, box, point, size = self._marks()
        details = dict(
            morphology=self.ui.morphologyComboBox.currentData,
            distribution=self.ui.distributionComboBox.currentData,
            comment=self.ui.commentLineEdit.text,
        )

        def shown(annotations):
            self.ui.statusLabel.text = _(
                "Saved '{label}'. This image now has {count} labeled ROI(s)."
            ).format(label=label, count=len(annotations))

        self._submit(
            lambda done, failed: self.core.submit_annotate(
                done, failed, label, volume, roi_node=box, point_ras=point, size_mm=size, **details
            ),
            shown,
        )

    def onNextSample(self):
        core = self.core
        core.settings.strategy = self.ui.strategyComboBox.currentText or core.settings.strategy
        core.save_settings()

        def shown(sample):
            if sample is None:
                self.ui.statusLabel.text = _("Every candidate ROI is labeled: nothing left to annotate.")
                return
            self._parameterNode.inputVolume = core.volume
            self._parameterNode.useRoiBox = True
            slicer.util.setSliceViewerLayers(background=core.volume, fit=True)
            self.ui.statusLabel.text = _("Sample {image} proposed by {strategy} (score {score}).").format(
                image=sample.image_id,
                strategy=sample.proposer,
                score=f"{sample.score:.3f}" if sample.score is not None else "n/a",
            )

        roiNode = self._parameterNode.roiNode
        self._submit(lambda done, failed: core.submit_next_sample(done, failed, roi_node=roiNode), shown)

    def onTrain(self):
        model = self.ui.trainModelComboBox.currentText
        epochs = self._parameterNode.trainEpochs

        def started(_answer):
            self.core.settings.train_model = model
            self.core.save_settings()
            self.ui.trainProgressBar.value = 0
            self.ui.trainStatusLabel.text = _("Training {model} submitted.").format(model=model)
            self._trainTimer.start()

        self._submit(
            lambda done, failed: self.core.submit_start_training(done, failed, model, max_epochs=epochs),
            started,
        )

    def onTrainTimer(self):
        self.core.polls.poll()  # deliver the previous poll's answer, if it came
        if not self.core.training_running:
            self._trainTimer.stop()
            self.updateControls()
            return
        self.core.submit_follow_training(self._showProgress)

    def _showProgress(self, progress):
        if progress is None:
            return
        self.ui.trainProgressBar.value = int(round(100 * progress.progress))
        self.ui.trainStatusLabel.text = self.core.monitor.summary()
        if not self.core.training_running:
            self.updateControls()

    def onStopTraining(self):
        self._submit(
            lambda done, failed: self.core.submit_stop_training(done, failed),
            lambda _answer: self._trainTimer.start(),
        )


def _fill(comboBox, names, current):
    comboBox.clear()
    for name in names:
        comboBox.addItem(name)
    if current in names:
        comboBox.setCurrentIndex(comboBox.findText(current))


#
# The module's logic (Slicer's side): the parameter node, and `core`, the shared, Qt-free Logic
# session (microcalcai_logic.MicrocalcAILogic) with Slicer's settings and temporary folder.
#


class MicrocalcAIModuleLogic(ScriptedLoadableModuleLogic):
    def __init__(self, remember=True):
        ScriptedLoadableModuleLogic.__init__(self)
        from microcalcai_logic import MicrocalcAILogic

        self.core = MicrocalcAILogic(
            slicer.mrmlScene,
            remember=remember,
            settings_store=slicer.app.userSettings(),
            temp_folder=os.path.join(slicer.app.temporaryPath, "MicrocalcAI"),
        )

    def getParameterNode(self):
        return MicrocalcAIParameterNode(super().getParameterNode())


#
# Self-test: the Logic end to end against a server, inside Slicer
#


class MicrocalcAITest(ScriptedLoadableModuleTest):
    """Needs a running server (MICROCALCAI_SERVER_URL, or the address the module remembers) and
    the module's Python packages; without either it says so and skips. It installs nothing and
    leaves the user's settings as they are."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_EndToEnd()

    def test_EndToEnd(self):
        from microcalcai_logic.requirements import missing_requirements

        missing = missing_requirements()
        if missing:
            self.delayDisplay(
                _("MicrocalcAI self-test skipped: install {names} first (press Connect).").format(
                    names=", ".join(missing)
                )
            )
            return
        from microcalcai_logic import MicrocalcAILogic, ServerError, selfcheck
        from microcalcai_logic.settings import load_settings

        url = os.environ.get("MICROCALCAI_SERVER_URL") or load_settings(slicer.app.userSettings()).server_url
        core = MicrocalcAILogic(
            slicer.mrmlScene,
            remember=False,
            temp_folder=os.path.join(slicer.app.temporaryPath, "MicrocalcAI-test"),
        )
        core.settings.server_url = url
        try:
            core.connect()
        except ServerError as error:
            self.delayDisplay(
                _("MicrocalcAI self-test skipped: no server reachable ({error}).").format(error=error)
            )
            return
        self.delayDisplay(_("MicrocalcAI self-test against {url}").format(url=url))
        outcome = selfcheck.run(core, log=self.delayDisplay)
        self.assertGreaterEqual(outcome["rows"], 1)
        self.assertTrue(0.0 <= outcome["probability"] <= 1.0)
        sliceCompositeNodes = slicer.util.getNodesByClass("vtkMRMLSliceCompositeNode")
        saliency = core.saliency_node()
        self.assertTrue(any(n.GetForegroundVolumeID() == saliency.GetID() for n in sliceCompositeNodes))
        self.delayDisplay(_("MicrocalcAI self-test passed"))
