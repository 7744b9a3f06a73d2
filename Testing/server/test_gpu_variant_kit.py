"""What runs the active-learning benchmark's gpu variant on an offline GPU machine: the wheel folder
(benchmarks/gpu_wheelhouse.py: pins, the slimmed monailabel, the import-only stand-ins) and the
one-command run (benchmarks/run_gpu_variant.sh). Nothing here downloads: the wheels are built from
local folders."""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def kit(load_benchmark):
    return load_benchmark("gpu_wheelhouse")


def _install(wheels: list[Path], target: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q", "install", "--no-index",
         "--no-deps", "--target", str(target), *map(str, wheels)],
        check=True, capture_output=True,
    )  # fmt: skip


def _python_in(target: Path, code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(target)!r}); {code}"],
        capture_output=True, text=True,
    )  # fmt: skip


def test_every_package_fetched_is_pinned_by_the_lock(kit):
    small, full = kit.requirements(small=True), kit.requirements(small=False)
    assert all(re.fullmatch(r"[a-z0-9\-]+==\S+", r) for r in full)
    assert len(full) == len(set(full)) == len(small) + len(kit.CONVERTERS)
    assert "monailabel==0.8.5" in small and not any(r.startswith("simpleitk==") for r in small)
    assert any(r.startswith("simpleitk==") for r in full)


def test_a_package_the_lock_does_not_pin_is_refused_with_what_to_do(kit, tmp_path):
    lock = tmp_path / "lock.txt"
    lock.write_text("fastapi==0.165.0\n")
    with pytest.raises(SystemExit, match="pins no version of .*add them to the lock"):
        kit.requirements(small=True, lock=lock)


def test_a_stand_in_imports_and_refuses_use_with_a_clear_error(kit, tmp_path):
    wheel = kit.stand_in("simpleitk", "SimpleITK", "2.5.7", tmp_path / "wheels")
    assert wheel.name.startswith("simpleitk-2.5.7+importonly-py3-none-any")
    _install([wheel], tmp_path / "site")
    # what importing pydicom-seg does with it: attributes in annotations, at import time
    imported = _python_in(
        tmp_path / "site",
        "import typing, SimpleITK as sitk, importlib.metadata as m; "
        "t = typing.Optional[sitk.Image]; print(m.version('simpleitk'), sitk.sitkUInt8)",
    )
    assert imported.returncode == 0, imported.stderr
    assert imported.stdout.split()[0] == "2.5.7+importonly"
    used = _python_in(tmp_path / "site", "import SimpleITK as sitk; sitk.ReadImage('a.nrrd')")
    assert used.returncode != 0
    assert "ImportError: SimpleITK.ReadImage was called" in used.stderr
    assert "install the real package" in used.stderr


def _wheel_with_viewer(tmp_path: Path) -> Path:
    project = tmp_path / "project"
    (project / "demo" / "static" / "ohif").mkdir(parents=True)
    (project / "demo" / "__init__.py").write_text("ANSWER = 42\n")
    (project / "demo" / "static" / "favicon.ico").write_bytes(b"icon")
    (project / "demo" / "static" / "ohif" / "index.html").write_text("<html>" + "x" * 50_000)
    (project / "pyproject.toml").write_text(
        '[project]\nname = "demo"\nversion = "1.0"\n'
        '[tool.setuptools]\npackages = ["demo"]\ninclude-package-data = true\n'
        '[tool.setuptools.package-data]\ndemo = ["static/*", "static/ohif/*"]\n'
        '[build-system]\nrequires = ["setuptools"]\nbuild-backend = "setuptools.build_meta"\n'
    )
    subprocess.run(
        [sys.executable, "-m", "pip", "-q", "wheel", "--no-deps", "--no-build-isolation", "-w",
         str(tmp_path / "wheels"), str(project)],
        check=True, capture_output=True,
    )  # fmt: skip
    return next((tmp_path / "wheels").glob("demo-1.0-*.whl"))


def test_a_slimmed_wheel_loses_those_files_and_their_record_lines_and_still_installs(kit, tmp_path):
    wheel = _wheel_with_viewer(tmp_path)
    assert "demo/static/ohif/index.html" in zipfile.ZipFile(wheel).namelist()
    saved = kit.without(wheel, re.compile(r"^demo/static/ohif/"))
    assert saved > 0
    with zipfile.ZipFile(wheel) as slim:
        names = slim.namelist()
        record = slim.read(next(n for n in names if n.endswith(".dist-info/RECORD"))).decode()
    assert not any("ohif" in n for n in names) and "ohif" not in record
    assert "demo/static/favicon.ico" in names and "demo/static/favicon.ico," in record
    _install([wheel], tmp_path / "site")
    assert (tmp_path / "site" / "demo" / "static" / "favicon.ico").is_file()
    assert not (tmp_path / "site" / "demo" / "static" / "ohif").exists()
    assert _python_in(tmp_path / "site", "import demo; assert demo.ANSWER == 42").returncode == 0


def test_monailabels_viewer_and_bundled_apps_are_what_is_dropped(kit):
    drop = kit.MONAILABEL_UNUSED
    assert drop.search("monailabel/endpoints/static/ohif/app.bundle.js")
    assert drop.search("monailabel-0.8.5-202411252313.data/data/monailabel/plugins/slicer/x.py")
    for kept in (
        "monailabel/endpoints/static/favicon.ico",
        "monailabel/app.py",
        "monailabel-0.8.5.dist-info/RECORD",
    ):
        assert not drop.search(kept), kept


@pytest.mark.slow
@pytest.mark.server
def test_the_run_script_measures_runs_and_archives_the_records(tmp_path, leave_in_hub_cache):
    """The whole command on a CPU, small: no wheels to install here (this Python has them), the
    members' ImageNet weights from the folder's hub/ cache (as --imagenet leaves them), the loader
    measured, one round of random through the real server, everything archived."""
    import timm
    import torch

    wheels, results, work = tmp_path / "wheels", tmp_path / "results", tmp_path / "work"
    torch.manual_seed(5)
    downloaded = timm.create_model("mobilenetv2_100", num_classes=1000).state_dict()
    leave_in_hub_cache(wheels / "hub" / "huggingface", "mobilenetv2_100", downloaded)
    al_args = (
        "--variant gpu --arch mobilenetv2_100 mobilenetv2_100 --weights imagenet --spacing-mm 0.1 "
        "--roi-size 64 --input-size 64 --max-epochs 1 --pool-patients 40 --test-patients 24 "
        "--val-patients 16 --cold-start 20 --batch 8 --rounds 1 --seeds 0 --strategies random --threads 1"
    )
    env = {
        **os.environ,
        "PYTHON": sys.executable,
        "WHEELS": str(wheels),
        "RESULTS": str(results),
        "WORK": str(work),
        "LIMIT_S": "500",
        "AL_ARGS": al_args,
        "LOADER_ARGS": "--workers 0 --images 32 --repeats 1 --size 64",
    }
    script = REPO / "benchmarks" / "run_gpu_variant.sh"
    done = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "benchmark exit 0" in done.stdout and "ImageNet weights from" in done.stdout, done.stdout
    assert "python " in (results / "machine.txt").read_text()
    assert json.loads((results / "loader.json").read_text())["images_per_s"]["0"][0] > 0
    with (results / "gpu-utilisation.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert rows and float(rows[0]["load1"]) >= 0
    with tarfile.open(results / "results.tgz") as archive:
        names = archive.getnames()
        record = json.load(archive.extractfile("./al/runs/random-seed0.json"))
        card = json.load(archive.extractfile("./al/work/random-seed0/built/mobilenetv2_100-a/model.json"))
    assert [r["labels"] for r in record["rounds"]] == [20, 28]
    assert card["weights_init"]["source"] == "imagenet-cache"  # from hub/, with the hub offline
    starts = [n for n in names if n.endswith("/start/model.json")]  # each retraining's start
    assert len(starts) == 2
    for start in starts:
        with tarfile.open(results / "results.tgz") as archive:
            toward = json.load(archive.extractfile(start))["weights_init"]["other"]
        assert toward["source"] == "imagenet-cache", toward  # shrunk toward the cached ImageNet
    assert sum(n.endswith("metrics.csv") for n in names) == 2  # each member's retraining, per epoch
    assert not any(n.startswith("./al/data/") or n.endswith(".pt") for n in names)
    assert "random-seed0 round 1/1" in (results / "al.log").read_text()
