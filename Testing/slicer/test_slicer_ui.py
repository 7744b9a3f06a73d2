"""The Widget is glue between the .ui file, the parameter node and the Logic: check that the
three agree, without Qt (the Slicer application cannot run here)."""

import ast
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from microcalcai_logic import MicrocalcAILogic

MODULE_DIR = Path(__file__).resolve().parents[2] / "MicrocalcAI"
UI_PATH = MODULE_DIR / "Resources" / "UI" / "MicrocalcAI.ui"
MODULE_PATH = MODULE_DIR / "MicrocalcAI.py"


@pytest.fixture(scope="module")
def ui():
    return ET.parse(UI_PATH).getroot()


@pytest.fixture(scope="module")
def module_tree():
    return ast.parse(MODULE_PATH.read_text(encoding="utf-8"))


def _widgets(ui):
    return {w.get("name"): w for w in ui.iter("widget")}


def _attribute_chains(tree, *prefix):
    """Names X in expressions like prefix.X (e.g. self.ui.X)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            chain, value = [], node.value
            while isinstance(value, ast.Attribute):
                chain.insert(0, value.attr)
                value = value.value
            if isinstance(value, ast.Name):
                chain.insert(0, value.id)
                if tuple(chain) == prefix:
                    found.add(node.attr)
    return found


def _parameter_fields(tree):
    cls = next(
        n for n in ast.walk(tree) if isinstance(n, ast.ClassDef) and n.name == "MicrocalcAIParameterNode"
    )
    return {
        s.target.id: ast.unparse(s.annotation)
        for s in cls.body
        if isinstance(s, ast.AnnAssign) and isinstance(s.target, ast.Name)
    }


def _property(widget, name):
    for prop in widget.findall("property"):
        if prop.get("name") == name:
            child = prop[0]
            return [s.text for s in child] if child.tag == "stringlist" else child.text
    return None


def test_every_widget_the_code_uses_exists_in_the_ui(ui, module_tree):
    used = _attribute_chains(module_tree, "self", "ui")
    assert len(used) >= 20  # the parse found the glue
    missing = sorted(used - set(_widgets(ui)))
    assert not missing, f"used in MicrocalcAI.py but absent from MicrocalcAI.ui: {missing}"


def test_widget_names_are_unique(ui):
    names = [w.get("name") for w in ui.iter("widget")]
    assert len(names) == len(set(names))


def test_parameter_bindings_name_real_parameters_of_matching_type(ui, module_tree):
    fields = _parameter_fields(module_tree)
    bound = {}
    for name, widget in _widgets(ui).items():
        parameter = _property(widget, "SlicerParameterName")
        if parameter is None:
            continue
        assert parameter in fields, f"{name} binds unknown parameter {parameter!r}"
        bound[parameter] = widget
        annotation = fields[parameter]
        if widget.get("class") == "qMRMLNodeComboBox":
            assert _property(widget, "nodeTypes") == [annotation], (
                f"{name} selects other nodes than {annotation}"
            )
        elif widget.get("class") == "QCheckBox":
            assert annotation == "bool"
        elif widget.get("class") in ("ctkSliderWidget", "ctkDoubleSpinBox"):
            assert "float" in annotation
        elif widget.get("class") == "QSpinBox":
            assert "int" in annotation
    # Everything a user sets in the panel is saved with the scene.
    assert {"inputVolume", "roiNode", "pointNode", "roiSizeMm", "saliencyOpacity", "showSaliency"} <= set(
        bound
    )


def test_mrml_widgets_receive_the_scene_and_custom_widgets_are_declared(ui):
    widgets = _widgets(ui)
    receivers = {
        c.findtext("receiver")
        for c in ui.iter("connection")
        if c.findtext("slot") == "setMRMLScene(vtkMRMLScene*)"
    }
    mrml = {
        n
        for n, w in widgets.items()
        if w.get("class").startswith(("qMRML", "qSlicer")) and n != "MicrocalcAI"
    }
    assert mrml and mrml <= receivers
    declared = {c.findtext("class") for c in ui.iter("customwidget")}
    used_custom = {w.get("class") for w in widgets.values() if not w.get("class").startswith("Q")}
    assert used_custom <= declared
    sections = [w for w in widgets.values() if w.get("class") == "ctkCollapsibleButton"]
    assert len(sections) >= 4


def test_widget_calls_only_what_the_logic_offers(module_tree):
    used = (
        _attribute_chains(module_tree, "self", "logic", "core")
        | _attribute_chains(module_tree, "self", "core")
        | _attribute_chains(module_tree, "core")
    )
    # Every server call goes through the Logic's worker thread (submit_*), never directly.
    assert {
        "submit_connect",
        "submit_classify",
        "submit_annotate",
        "submit_next_sample",
        "submit_start_training",
        "submit_stop_training",
        "submit_follow_training",
        "submit_exam",
        "submit_classify_view",
        "controls",
        "select_volume",
        "set_upload_consent",
    } <= used
    widget = _class(module_tree, "MicrocalcAIWidget")
    in_widget = _attribute_chains(widget, "self", "core") | _attribute_chains(widget, "core")
    blocking = {
        "connect",
        "classify",
        "annotate",
        "next_sample",
        "start_training",
        "stop_training",
        "exam_of",
        "classify_view",
    }
    assert not blocking & in_widget, "the panel calls the server on the GUI thread"
    missing = sorted(
        name for name in used if not hasattr(MicrocalcAILogic, name) and name not in _instance_state()
    )
    assert not missing, f"the Widget calls Logic members that do not exist: {missing}"


def _instance_state():
    return set(vars(MicrocalcAILogic(scene=None, remember=False)))


def test_module_puts_its_logic_folder_on_the_path(module_tree):
    source = MODULE_PATH.read_text(encoding="utf-8")
    assert 'os.path.join(MODULE_DIR, "Logic")' in source and "sys.path.insert(0, LOGIC_DIR)" in source
    assert (MODULE_DIR / "Logic" / "microcalcai_logic" / "__init__.py").is_file()
    classes = {n.name for n in ast.walk(module_tree) if isinstance(n, ast.ClassDef)}
    assert {"MicrocalcAI", "MicrocalcAIWidget", "MicrocalcAIModuleLogic", "MicrocalcAITest"} <= classes
    # One class of that name only: the shared Logic's (microcalcai_logic.MicrocalcAILogic).
    assert "MicrocalcAILogic" not in classes


def test_ui_is_not_tied_to_qt_only_features_slicer_lacks(ui):
    # Qt Designer writes <ui version="4.0">; Slicer's loader needs the top widget to be a qMRMLWidget
    # so that setMRMLScene reaches the selectors.
    assert ui.get("version") == "4.0"
    assert ui.find("widget").get("class") == "qMRMLWidget"


def _class(tree, name):
    return next(n for n in ast.walk(tree) if isinstance(n, ast.ClassDef) and n.name == name)


def _calls(node):
    """Dotted names of every call under an AST node (e.g. 'slicer.util.pip_install')."""
    names = set()
    for call in ast.walk(node):
        if isinstance(call, ast.Call):
            names.add(ast.unparse(call.func))
    return names


def test_widget_follows_slicer_conventions(module_tree):
    source = MODULE_PATH.read_text(encoding="utf-8")
    widget_calls = _calls(_class(module_tree, "MicrocalcAIWidget"))
    # Python packages: Slicer 5.8/5.10's pip helper, inside an error display, after asking.
    assert "slicer.util.pip_install" in widget_calls and "slicer.packaging" not in source
    ensure = next(
        n for n in ast.walk(module_tree) if isinstance(n, ast.FunctionDef) and n.name == "_ensureRequirements"
    )
    guarded = [w for w in ast.walk(ensure) if isinstance(w, ast.With)]
    assert any("tryWithErrorDisplay" in ast.unparse(w.items[0].context_expr) for w in guarded)
    assert any("pip_install" in ast.unparse(w) for w in guarded)
    assert "slicer.util.tryWithErrorDisplay" in source and "slicer.util.errorDisplay" not in source
    # Volumes are loaded by the Logic (slicer.util.loadVolume in the application), never here.
    assert "vtkSlicerVolumesLogic" not in source
    # Settings in Slicer's own settings, files in its temporary folder.
    logic_calls = _calls(_class(module_tree, "MicrocalcAIModuleLogic"))
    assert "slicer.app.userSettings" in logic_calls and "slicer.app.temporaryPath" in ast.unparse(
        _class(module_tree, "MicrocalcAIModuleLogic")
    )
    # Reload re-imports the Logic package too.
    reload = ast.unparse(
        next(n for n in ast.walk(module_tree) if isinstance(n, ast.FunctionDef) and n.name == "onReload")
    )
    assert (
        "sys.modules" in reload
        and "LOGIC_PACKAGE" in reload
        and "ScriptedLoadableModuleWidget.onReload" in reload
    )
    # Server answers come back through a QTimer poll, not a blocking call in a slot.
    assert "self.core.tasks.poll" in source and "qt.QTimer" in source
    # Strings shown to people are translatable, with a fallback for Slicers without slicer.i18n.
    assert "from slicer.i18n import tr as _" in source and "except ImportError" in source
    translated = [
        c
        for c in ast.walk(_class(module_tree, "MicrocalcAIWidget"))
        if isinstance(c, ast.Call) and isinstance(c.func, ast.Name) and c.func.id == "_"
    ]
    assert len(translated) >= 10


def test_self_test_installs_nothing_and_keeps_the_users_settings(module_tree):
    test_class = _class(module_tree, "MicrocalcAITest")
    text = ast.unparse(test_class)
    assert "pip_install" not in text and "_ensureRequirements" not in text
    assert "remember=False" in text and "ServerError" in text and "skipped" in text
