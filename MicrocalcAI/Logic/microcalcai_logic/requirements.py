"""The client's Python packages (Resources/requirements.txt): which are missing, and how to get
them where Slicer cannot reach a package index."""

import os
from typing import Optional

REQUIREMENTS_FILE = os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
    "Resources",
    "requirements.txt",
)


def requirement_lines(path: Optional[str] = None) -> list:
    """The requirement specifiers of the file, comments and blank lines left out."""
    with open(path or REQUIREMENTS_FILE, encoding="utf-8") as handle:
        return [line.split("#")[0].strip() for line in handle if line.split("#")[0].strip()]


def distribution_name(requirement: str) -> str:
    """'requests-toolbelt>=0.9' -> 'requests-toolbelt' (PEP 508: the name ends at the first
    character that cannot be part of one; `packaging` is not guaranteed inside Slicer)."""
    for index, character in enumerate(requirement):
        if not (character.isalnum() or character in "-_."):
            return requirement[:index]
    return requirement


def missing_requirements(path: Optional[str] = None) -> list:
    """The requirement lines whose distribution is not installed in this Python."""
    from importlib import metadata

    missing = []
    for requirement in requirement_lines(path):
        try:
            metadata.version(distribution_name(requirement))
        except metadata.PackageNotFoundError:
            missing.append(requirement)
    return missing


def offline_instructions(missing: list) -> str:
    """What to do when Slicer cannot install them itself (no internet, a proxy, a firewall)."""
    names = " ".join(distribution_name(r) for r in missing)
    return (
        "MicrocalcAI needs these Python packages: {}. Without internet access: on a connected "
        "machine run `pip download {} -d wheels`, copy the wheels folder here, and in Slicer's "
        "Python console run slicer.util.pip_install('--no-index --find-links /path/to/wheels {}'), "
        "then restart Slicer.".format(", ".join(missing), names, names)
    )
