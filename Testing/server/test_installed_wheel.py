"""The package as a user installs it: a wheel built from this repository, installed (not editable)
in a fresh virtual environment, trains with a named recipe and serves /train.

The fresh environment has only the wheel of its own; the third-party packages (torch, timm, MONAI
Label, ...) come from the test's environment through a .pth file, which adds their folder to the
end of sys.path: installing them again would take minutes and prove nothing about our package.
Every check first makes sure microcalcai was imported from the fresh environment, not from src/.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import yaml
from server_helpers import host_tiny_models, write_studies

sys.path.insert(0, str(Path(__file__).parents[1] / "train"))
from train_helpers import TINY_SIZES  # noqa: E402  (64 px, batch 8: a one-epoch fit takes seconds)

pytestmark = [pytest.mark.server, pytest.mark.slow]


# Run by the fresh environment's Python: a server of its own, one training through HTTP.
TRAIN_OVER_HTTP = """
import json, sys, time, urllib.request
import microcalcai
from microcalcai.server.launch import LocalServer

studies, workspace = sys.argv[1:3]

def call(url, method="GET", body=None):
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    with urllib.request.urlopen(request, timeout=30) as answer:
        return json.loads(answer.read())

with LocalServer(studies, workspace, env={"OMP_NUM_THREADS": "2"}) as server:
    call(f"{server.url}/train/tiny-a", "POST", {"max_epochs": 1, "include_manifest_labels": True,
                                               "val_fraction": 0.5, "publish_if": "always"})
    deadline = time.monotonic() + 400
    while (status := call(f"{server.url}/train/"))["status"] not in ("DONE", "ERROR"):
        assert time.monotonic() < deadline, status
        time.sleep(1)
    stats = call(f"{server.url}/info/")["train_stats"]["tiny-a"]
print(json.dumps({"imported_from": microcalcai.__file__, "status": status, "stats": stats}))
"""


@pytest.fixture(scope="module")
def fresh_env(tmp_path_factory, repo_root) -> dict:
    root = tmp_path_factory.mktemp("wheel")
    # Build from a copy of what the wheel is made of, so the build leaves nothing in the checkout.
    source = root / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE.txt"):
        shutil.copy(repo_root / name, source / name)
    skip = shutil.ignore_patterns("__pycache__", "*.egg-info")
    shutil.copytree(repo_root / "src", source / "src", ignore=skip)
    # The client contract ships in the Slicer Logic's package, a dependency of microcalcai's: a
    # user's pip installs both wheels, so the test builds and installs both.
    logic = root / "logic-source"
    shutil.copytree(repo_root / "MicrocalcAI" / "Logic", logic, ignore=skip)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    # Without the caller's PYTHONPATH: a src/ on it would make pip see microcalcai as installed.
    pip_env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    wheels = []
    for folder, name in ((source, "microcalcai-"), (logic, "microcalcai_slicer_logic-")):
        built = subprocess.run(
            [*pip, "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", root / "dist", folder],
            capture_output=True,
            text=True,
            timeout=300,
            env=pip_env,
        )
        assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-2000:]
        wheels.append(str(next((root / "dist").glob(f"{name}*.whl"))))
    venv = root / "venv"
    subprocess.run([sys._base_executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    installed = subprocess.run(
        [*pip, "--python", str(python), "install", "--no-deps", "--no-index", *wheels],
        capture_output=True,
        text=True,
        timeout=300,
        env=pip_env,
    )
    assert installed.returncode == 0, installed.stdout[-2000:] + installed.stderr[-2000:]
    site = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    # Written after the install, so pip never saw the test environment's editable microcalcai.
    (site / "third-party-packages.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1", OMP_NUM_THREADS="2")
    return {"root": root, "python": python, "bin": venv / "bin", "site": site, "env": env}


def _run(fresh_env, command, timeout=600):
    return subprocess.run(
        [str(c) for c in command],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=fresh_env["env"],
        cwd=fresh_env["root"],  # not the checkout: nothing of src/ can come in through the cwd
    )


@pytest.fixture(scope="module")
def studies(fresh_env) -> Path:
    folder = fresh_env["root"] / "studies"
    write_studies(folder, None)
    return folder


def test_the_wheel_holds_the_recipes_and_is_what_gets_imported(fresh_env):
    done = _run(
        fresh_env,
        [
            fresh_env["python"],
            "-c",
            "import microcalcai; from microcalcai.train.recipes import available_recipes, recipes_dir;"
            "from microcalcai_logic import contract;"
            "print(microcalcai.__file__); print(recipes_dir()); print(','.join(available_recipes()));"
            "print(contract.__file__)",
        ],
    )
    assert done.returncode == 0, done.stderr[-3000:]
    module, folder, names, contract = done.stdout.split()
    assert Path(module).is_relative_to(fresh_env["site"]), f"microcalcai imported from {module}"
    assert Path(contract).is_relative_to(fresh_env["site"]), f"the contract imported from {contract}"
    assert Path(folder) == fresh_env["site"] / "microcalcai" / "recipes"
    assert {"kang2021", "arlan2025", "shia2025", "mobini2024", "phantom"} <= set(names.split(","))


def test_the_installed_command_trains_with_a_named_recipe(fresh_env, studies):
    out = fresh_env["root"] / "run"
    command = [fresh_env["bin"] / "microcalcai", "train", "--recipe", "kang2021", "--data"]
    command += [studies / "manifest.csv", "--out", out, "--arch", "tf_efficientnet_lite0", "--epochs", "1"]
    command += ["--weights", "none", "--no-progress"]
    for item in TINY_SIZES:
        command += ["--set", item]
    done = _run(fresh_env, command)
    assert done.returncode == 0, done.stderr[-3000:]
    recipe = yaml.safe_load((out / "recipe.yaml").read_text())
    assert recipe["name"] == "kang2021" and recipe["optimizer"]["weight_decay"] == 5e-4
    assert Path(recipe["source"]) == fresh_env["site"] / "microcalcai" / "recipes" / "kang2021.yaml"
    assert (out / "tf_efficientnet_lite0" / "model" / "model.json").is_file()


def test_the_installed_server_trains_over_http(fresh_env, studies):
    workspace = fresh_env["root"] / "workspace"
    host_tiny_models(workspace, fresh_env["root"] / "built-models")
    done = _run(fresh_env, [fresh_env["python"], "-c", TRAIN_OVER_HTTP, studies, workspace])
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    assert Path(answer["imported_from"]).is_relative_to(fresh_env["site"]), answer["imported_from"]
    assert answer["status"]["status"] == "DONE", answer["status"]
    assert answer["stats"]["state"] == "done" and answer["stats"]["epoch"] == 1
    # The training child read the phantom recipe from the installed package.
    recipes = list((workspace / "models" / "tiny-a" / "runs").glob("*/recipe.yaml"))
    assert len(recipes) == 1, recipes
    source = Path(yaml.safe_load(recipes[0].read_text())["source"])
    assert source == fresh_env["site"] / "microcalcai" / "recipes" / "phantom.yaml"
