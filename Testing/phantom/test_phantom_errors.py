"""Bad settings get one clear error naming the setting; the command line exits 2 or 1."""

from __future__ import annotations

import subprocess
import sys

import pytest

from microcalcai.errors import InputError
from microcalcai.phantom import generate_dataset

OK = dict(patients=1, seed=0, roi_size=64, spacing_mm=0.1, full_field=False, progress=False)


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(roi_size=-5), "roi_size"),
        (dict(spacing_mm=0.0), "spacing_mm"),
        (dict(spacing_mm=-0.07), "spacing_mm"),
        (dict(patients=0), "patients"),
        (dict(morphologies=["punctate", "starry"]), "starry.*not a known BI-RADS morphology"),
        (dict(bits_stored=20), "bits_stored"),
        (dict(beta=1.0), "beta"),
        (dict(density=1.5), "density"),
        (dict(findings_per_breast=(2, 1)), "findings_per_breast"),
        (dict(views=("CC", "ML")), "views"),
        (dict(field_size=32), "field_size"),
        (dict(electronic_noise=-1.0), "electronic_noise"),
        (dict(backgrounds=["/nonexistent/file.dcm"], full_field=True), "does not exist"),
        (dict(colour="red"), "unknown phantom option"),
    ],
)
def test_bad_settings_are_refused_before_anything_is_written(tmp_path, change, message):
    settings = dict(OK, **change)
    with pytest.raises(InputError, match=message):
        generate_dataset(tmp_path / "out", **settings)
    assert not (tmp_path / "out").exists()


def test_existing_output_is_not_overwritten_unless_asked(tmp_path):
    generate_dataset(tmp_path / "out", **OK)
    with pytest.raises(FileExistsError):
        generate_dataset(tmp_path / "out", **OK)
    generate_dataset(tmp_path / "out", overwrite=True, **OK)


def _cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "microcalcai", "synth", *args], capture_output=True, text=True, timeout=120
    )


def test_cli_usage_and_input_errors(tmp_path):
    usage = _cli("--out", str(tmp_path / "x"), "--patients", "2", "--seed", "1", "--spacing-mm", "0")
    assert usage.returncode == 2 and "--spacing-mm" in usage.stderr and "greater than 0" in usage.stderr
    bad = _cli(
        "--out",
        str(tmp_path / "y"),
        "--patients",
        "1",
        "--seed",
        "1",
        "--spot",
        "--roi-size",
        "64",
        "--morphologies",
        "punctate,starry",
    )
    assert bad.returncode == 1
    assert "microcalcai synth: error:" in bad.stderr and "starry" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_cli_writes_a_data_set_and_reports_the_auc(tmp_path):
    run = _cli(
        "--out",
        str(tmp_path / "set"),
        "--patients",
        "2",
        "--seed",
        "3",
        "--spot",
        "--roi-size",
        "64",
        "--spacing-mm",
        "0.15",
        "--views",
        "CC",
        "--one-breast",
        "--negatives",
        "1",
        "--roi-png",
        "--no-progress",
    )
    assert run.returncode == 0, run.stderr
    assert "Bayes-optimal AUC: expected 0.9" in run.stdout
    assert (tmp_path / "set" / "manifest.csv").is_file() and (tmp_path / "set" / "phantom.json").is_file()
    assert list((tmp_path / "set" / "rois").glob("*.png"))


def test_ctrl_c_stops_a_run_with_workers_without_finishing_the_queue(tmp_path):
    """Ctrl-C (SIGINT to the main process) stops `synth --workers 2` once the cases under way are
    done: the queue of patients not started is cancelled, no worker is left, no output is left.
    Before, the pool's exit waited for every queued patient (minutes for this run)."""
    import signal
    import time

    out = tmp_path / "big"
    command = [sys.executable, "-m", "microcalcai", "synth", "--out", str(out), "--patients", "3000"]
    command += ["--seed", "1", "--spacing-mm", "0.2", "--roi-size", "32", "--workers", "2"]
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        workers = []
        deadline = time.monotonic() + 120
        while len(workers) < 2 and time.monotonic() < deadline:  # the pool has started its workers
            time.sleep(0.5)
            workers = [int(p) for p in _children(child.pid)]
        assert len(workers) == 2, "the worker processes did not start"
        time.sleep(2)
        child.send_signal(signal.SIGINT)
        _, err = child.communicate(timeout=120)
    finally:
        child.kill()
    assert child.returncode == 130 and "interrupted" in err, err[-500:]
    assert not out.exists() and not list(tmp_path.glob(".big*"))
    assert not [p for p in workers if _alive(p)], "worker processes were left running"


def _children(pid: int) -> list[str]:
    from pathlib import Path

    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        found += (task / "children").read_text().split()
    return found


def _alive(pid: int) -> bool:
    from pathlib import Path

    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False
