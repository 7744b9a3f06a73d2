"""Slicer still ships Python 3.9: everything under MicrocalcAI/ must parse and run there."""

import ast
import shutil
import subprocess
from pathlib import Path

MODULE_DIR = Path(__file__).resolve().parents[2] / "MicrocalcAI"


def test_vermin_finds_nothing_newer_than_python_39():
    vermin = shutil.which("vermin") or str(Path(__file__).resolve().parents[2] / ".venv" / "bin" / "vermin")
    done = subprocess.run(
        [vermin, "-t=3.9-", "--no-tips", "--violations", "--eval-annotations", str(MODULE_DIR)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Analyzing" in done.stdout  # it did look at the files


def _annotations(tree):
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            arguments = node.args.args + node.args.kwonlyargs + node.args.posonlyargs
            yield from (a.annotation for a in arguments if a.annotation is not None)
            if node.returns is not None:
                yield node.returns
        elif isinstance(node, ast.AnnAssign):
            yield node.annotation


def test_no_pep604_unions_in_annotations():
    # `X | None` is valid 3.9 syntax but fails when 3.9 evaluates the annotation (dataclass
    # fields and signatures are evaluated at import); vermin cannot tell `|` on types from
    # `|` on numbers, so look for it here.
    offenders = []
    files = sorted(MODULE_DIR.rglob("*.py"))
    assert len(files) >= 10
    for path in files:
        tree = ast.parse(path.read_text(encoding="utf-8"), feature_version=(3, 9))
        for annotation in _annotations(tree):
            if any(isinstance(n, ast.BinOp) and isinstance(n.op, ast.BitOr) for n in ast.walk(annotation)):
                offenders.append(f"{path.relative_to(MODULE_DIR)}:{annotation.lineno}")
    assert not offenders, "PEP 604 unions (use Optional/Union): " + ", ".join(offenders)


def test_the_contract_loads_without_the_library():
    """Slicer installs only the Logic: its contract must import with nothing of the library, torch or
    MONAI beside it (a fresh interpreter, the Logic folder alone on the path)."""
    import sys

    script = (
        "import sys; sys.path.insert(0, sys.argv[1]); import microcalcai_logic.contract as c; "
        "heavy = sorted(m for m in ('microcalcai', 'torch', 'timm', 'monai', 'monailabel') "
        "if m in sys.modules); "
        "print(len(c.LABELS), len(c.MORPHOLOGIES), len(c.DISTRIBUTIONS), heavy)"
    )
    done = subprocess.run(
        [sys.executable, "-I", "-c", script, str(MODULE_DIR / "Logic")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["2", "14", "5", "[]"], done.stdout
