"""The extension's build files agree with what is on disk (a file left out of CMake is missing
from a built extension, where nothing here would notice)."""

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MODULE_DIR = ROOT / "MicrocalcAI"


def _listed(cmake: str, variable: str) -> set:
    block = re.search(rf"set\({variable}\s+(.*?)\)", cmake, flags=re.S).group(1)
    return {
        line.strip().replace("${MODULE_NAME}", "MicrocalcAI") for line in block.splitlines() if line.strip()
    }


def test_module_cmake_lists_every_script_and_resource():
    cmake = (MODULE_DIR / "CMakeLists.txt").read_text()
    assert _listed(cmake, "MODULE_PYTHON_SCRIPTS") == {"MicrocalcAI.py", "${MODULE_LOGIC_SCRIPTS}"}
    glob = re.search(
        r"file\(GLOB MODULE_LOGIC_SCRIPTS RELATIVE \$\{CMAKE_CURRENT_SOURCE_DIR\} CONFIGURE_DEPENDS"
        r"\s+(\S+)\s*\)",
        cmake,
    )
    assert glob, "the Logic's scripts are globbed"
    matched = {p.name for p in MODULE_DIR.glob(glob.group(1))}
    assert {"__init__.py", "logic.py", "geometry.py", "client.py", "contract.py"} <= matched
    # Everything the package imports lies in that one folder (nothing the glob would miss).
    assert not [
        p
        for p in (MODULE_DIR / "Logic" / "microcalcai_logic").rglob("*.py")
        if p.parent.name != "microcalcai_logic"
    ]
    resources = _listed(cmake, "MODULE_PYTHON_RESOURCES")
    assert resources == {
        "Resources/Icons/MicrocalcAI.png",
        "Resources/UI/MicrocalcAI.ui",
        "Resources/requirements.txt",
    }
    assert all((MODULE_DIR / r).is_file() for r in resources)
    assert "slicerMacroBuildScriptedModule" in cmake and "WITH_GENERIC_TESTS" in cmake
    assert "slicer_add_python_unittest(SCRIPT ${MODULE_NAME}.py)" in cmake


def test_extension_metadata_and_index_description():
    cmake = (ROOT / "CMakeLists.txt").read_text()
    for key in (
        "EXTENSION_HOMEPAGE",
        "EXTENSION_CATEGORY",
        "EXTENSION_CONTRIBUTORS",
        "EXTENSION_DESCRIPTION",
        "EXTENSION_ICONURL",
        "EXTENSION_SCREENSHOTURLS",
        "EXTENSION_DEPENDS",
    ):
        assert re.search(rf'set\({key} "[^"]+"\)', cmake), key
    for line in (
        "find_package(Slicer REQUIRED)",
        "add_subdirectory(MicrocalcAI)",
        "include(${Slicer_EXTENSION_CPACK})",
    ):
        assert line in cmake
    # The Extensions Index catalog entry (the JSON form that replaced .s4ext files).
    entry = json.loads((ROOT / "MicrocalcAI.json").read_text())
    assert entry["$schema"].startswith(
        "https://raw.githubusercontent.com/Slicer/Slicer/main/Schemas/slicer-extension-catalog-entry-schema-v1."
    )
    allowed = {"$schema", "category", "scm_url", "scm_revision", "scm_type", "build_dependencies"}
    allowed |= {"dicom_support_rule", "build_subdirectory", "enabled", "tier"}
    assert {"$schema", "category", "scm_url"} <= set(entry) <= allowed
    assert entry["category"] == re.search(r'set\(EXTENSION_CATEGORY "([^"]+)"\)', cmake).group(1)
    repository = re.search(r'set\(MICROCALCAI_REPOSITORY "([^"]+)"\)', cmake).group(1)
    assert entry["scm_url"] == repository + ".git" and entry["build_subdirectory"] == "."
    assert not (ROOT / "MicrocalcAI.s4ext").exists()
    assert re.search(r'set\(EXTENSION_ICONURL "[^"]*MicrocalcAI/Resources/Icons/MicrocalcAI.png"\)', cmake)
    # The licence pyproject.toml declares, in full, where the Extensions Index looks for it.
    assert 'license = { text = "Apache-2.0" }' in (ROOT / "pyproject.toml").read_text()
    licence = (ROOT / "LICENSE.txt").read_text()
    assert "Apache License" in licence and "Version 2.0, January 2004" in licence
    assert "END OF TERMS AND CONDITIONS" in licence
    # The pictures the metadata points at exist in the repository.
    assert (ROOT / "docs" / "images" / "slicer-panel.png").is_file()
    assert (MODULE_DIR / "Resources" / "Icons" / "MicrocalcAI.png").stat().st_size > 1000


def test_requirements_match_the_logic_package_and_hold_no_torch():
    wanted = [
        line.strip()
        for line in (MODULE_DIR / "Resources" / "requirements.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    pyproject = (MODULE_DIR / "Logic" / "pyproject.toml").read_text()
    declared = re.search(r"dependencies = \[(.*?)\]", pyproject, flags=re.S).group(1)
    for requirement in wanted:
        assert f'"{requirement}"' in declared
    assert not any(name in " ".join(wanted).lower() for name in ("torch", "monai", "timm"))
