"""`/train/` routes: MONAI Label's own, behind the parameter checks and the cross-restart lock.

MONAI Label's `POST /train/{model}` answers 200 before anything is checked, knows only the
training its own process started (after a restart it accepted a second one and could not stop
the first), and its answers echo the child's log lines (tracebacks, absolute paths included).
routes.py offers these instead of MONAI Label's; they call its functions to start, stop and
report trainings, so its task records and child processes stay what they were:

- `POST /train/{model}`: the model, the parameters (train_params.py) and the labels are checked
  first (4xx JSON saying what to change); then, under the training lock (training_guard.py), a
  running training, including one left by a killed server, answers 409; the training's id and
  starting version are recorded before MONAI Label spawns it.
- `DELETE /train/` also stops a training that a previous server process started.
- `GET /train/` reports such a training too; answers carry no tracebacks and no paths.
- `POST /train/` (every model at once, queued; deprecated in MONAI Label) is refused.
"""

from __future__ import annotations

import json
import time
import uuid

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from monailabel.config import settings
from monailabel.endpoints.user.auth import RBAC, User

from microcalcai.server.errors import Conflict, NotFound, RequestError
from microcalcai.server.public_text import scrub_lines
from microcalcai.server.training_guard import BASE_VERSION, TRAINING_ID, TrainingGuard

SPAWN_WAIT_S = 10.0
_ADMIN = Depends(RBAC(settings.MONAI_LABEL_AUTH_ROLE_ADMIN))
_USER = Depends(RBAC(settings.MONAI_LABEL_AUTH_ROLE_USER))
_TRUE = ("1", "true", "yes", "on")


# -- routes ---------------------------------------------------------------------------------
async def api_run_model(model: str, request: Request, user: User = _ADMIN):
    for flag in ("run_sync", "enqueue"):
        if request.query_params.get(flag, "false").lower() in _TRUE:
            raise RequestError(
                f"{flag} is not supported: one training runs at a time, in its own process; "
                "start it without that query parameter and follow it with GET /train/"
            )
    raw = await request.body()
    try:
        body = json.loads(raw) if raw.strip() else None
    except ValueError:
        raise RequestError(
            'the body must be a JSON object of training parameters, like {"max_epochs": 5}'
        ) from None
    return await run_in_threadpool(start_training, _instance(), model, body)


async def api_run_all(user: User = _ADMIN):
    raise RequestError(
        f"name the model to train: POST /train/{{model}} with one of {_trainable(_instance())}"
    )


async def api_stop(user: User = _ADMIN):
    return await run_in_threadpool(stop_training, _instance())


async def api_status(all: bool = False, check_if_running: bool = False, user: User = _USER):
    return await run_in_threadpool(training_status, _instance(), all, check_if_running)


# -- what they do -----------------------------------------------------------------------------
def start_training(instance, model: str, body) -> dict:
    from monailabel.endpoints import train as monai_train

    from microcalcai.server.hosted import ENSEMBLE
    from microcalcai.server.train_params import check_labels, check_model, check_params
    from microcalcai.server.train_task import PUBLISH_RULES

    check_model(model, _trainable(instance), ENSEMBLE, tuple(instance.store.whole_image_names()))
    params = check_params(body, instance._trainers[model].config(), PUBLISH_RULES)
    guard = TrainingGuard(instance.workspace)
    with guard.locked():  # "busy" before "too few labels": the labels may be fine once it ends
        _refuse_if_running(guard)
    check_labels(instance.datastore(), instance.pool, params, instance.workspace)
    with guard.locked():
        _refuse_if_running(guard)
        training_id = uuid.uuid4().hex
        base_version = instance.store.current_version(model)
        guard.claim(training_id, model, base_version)
        try:
            task = monai_train.run_model(
                model, {**params, TRAINING_ID: training_id, BASE_VERSION: base_version}
            )
        except BaseException:
            guard.clear()
            raise
        process = _spawned(task["id"])
        if process is not None:
            guard.attach(training_id, process.pid)
    return public_task(task)


def _refuse_if_running(guard: TrainingGuard) -> None:
    from monailabel.utils.async_tasks.utils import processes

    guard.refuse_if_running()
    if processes("train"):  # MONAI Label's own list of the children this server process started
        raise Conflict("a training is already running; wait for it (GET /train/) or stop it (DELETE /train/)")


def stop_training(instance):
    from monailabel.endpoints import train as monai_train
    from monailabel.utils.async_tasks.utils import processes

    guard = TrainingGuard(instance.workspace)
    with guard.locked():
        if processes("train"):  # started by this server process: MONAI Label stops its child
            result = monai_train.stop()
            guard.clear()
            return public_task(result)
        record = guard.stop_orphan()
    if record is None:
        return monai_train.stop()  # nothing runs: MONAI Label's answer (null)
    _mark_stopped(instance, record)
    return {
        **_orphan_task(record),
        "status": "STOPPED",
        "end_ts": time.strftime("%Y-%m-%d %H:%M:%S"),
        "details": ["started by an earlier server process, which ended; stopped now, nothing published"],
    }


def training_status(instance, all_tasks: bool, check_if_running: bool):
    from monailabel.utils.async_tasks.task import AsyncTask

    result, detail = AsyncTask.status("train", all_tasks, check_if_running)
    if result is None:
        guard = TrainingGuard(instance.workspace)
        with guard.locked():
            record = guard.active()
        if record is None:
            raise NotFound(f"{detail}; start one with POST /train/{{model}}")
        orphan = _orphan_task(record)
        return [orphan] if all_tasks else orphan
    if isinstance(result, list):
        return [public_task(task) for task in result]
    return public_task(result)


# -- answers ----------------------------------------------------------------------------------
def public_task(task):
    """MONAI Label's task record without what a client must not see: the child's tracebacks,
    absolute paths, the server's internal request keys."""
    if not isinstance(task, dict):
        return task
    from microcalcai.server.train_task import DEFAULTS

    request = task.get("request") or {}
    out = {key: task[key] for key in ("id", "status", "start_ts", "end_ts") if key in task}
    out["model"] = request.get("model")
    out["request"] = {k: v for k, v in request.items() if k in DEFAULTS}
    out["details"] = scrub_lines(task.get("details") or [])
    return out


def _orphan_task(record: dict) -> dict:
    return {
        "id": record["id"],
        "status": "RUNNING",
        "model": record["model"],
        "start_ts": record.get("started"),
        "base_version": record.get("base_version"),
        "details": [
            "started by an earlier server process, which ended; it is still running (DELETE /train/ stops it)"
        ],
    }


def _mark_stopped(instance, record: dict) -> None:
    store = instance.store
    stats = store.read_stats(record["model"])
    if stats.get("state") == "running":
        stats.update(state="stopped", message="stopped (DELETE /train/); the served model is unchanged")
        store.write_stats(record["model"], stats)


def _spawned(task_id: str):
    """The child process MONAI Label starts for `task_id` (from its executor thread)."""
    from monailabel.utils.async_tasks.utils import processes

    deadline = time.monotonic() + SPAWN_WAIT_S
    while time.monotonic() < deadline:
        process = processes("train").get(task_id)
        if process is not None:
            return process
        time.sleep(0.02)
    return None


def _trainable(instance) -> list[str]:
    return sorted(getattr(instance, "_trainers", {}) or {})


def _instance():
    from monailabel.interfaces.utils.app import app_instance

    return app_instance()
