"""The checks of a training request that can be made before it is accepted.

MONAI Label answers `POST /train/{model}` with 200 as soon as the child process is spawned, so a
mistake (an unknown model, `max_epochs: "abc"`, too few labels) showed only later as a failed
run. These checks run in the server before anything starts and raise a RequestError saying what
to change; the training process runs them again (it may be started another way).
"""

from __future__ import annotations

import math

from microcalcai.errors import InputError
from microcalcai.server.errors import NotFound, RequestError

# (low, high) bounds of numeric parameters, inclusive; parameters not listed are only typed.
RANGES = {
    "max_epochs": (1, 1000),
    "seed": (0, 2**32 - 1),
    "min_per_class": (1, 10000),
    "tolerance": (0.0, 1.0),
    "lr_scale": (1e-4, 1.0),
    "shrink": (0.01, 1.0),
    "perturb": (0.0, 1.0),
}
OPEN_RANGES = {"val_fraction": (0.0, 1.0)}  # exclusive bounds


def check_model(model: str, trainable: list[str], ensemble: str, whole_image: tuple[str, ...] = ()) -> None:
    if model == ensemble:
        raise RequestError(
            f"{ensemble!r} is not trained itself: train its members ({', '.join(trainable)}) with "
            f"POST /train/{{model}}; the ensemble is rebuilt over their new versions"
        )
    if model not in trainable and model in whole_image:
        raise RequestError(
            f"{model!r} is a whole-image model: it is trained with `microcalcai train` (a whole-image "
            "recipe such as mobini2024) and hosted with `microcalcai serve --model`, not fine-tuned on "
            f"ROI labels here; the models that can be trained are {trainable}"
        )
    if model not in trainable:
        raise NotFound(f"unknown model {model!r}; the models that can be trained are {trainable}")


def check_params(body, defaults: dict, publish_rules: tuple[str, ...]) -> dict:
    """The body's parameters over the defaults, each checked for type and range."""
    if body is None:
        body = {}
    if not isinstance(body, dict):
        raise RequestError(
            f'the body must be a JSON object of training parameters (like {{"max_epochs": 5}}), '
            f"got a JSON {type(body).__name__}"
        )
    # MONAI Label's own client (MONAILabelClient.train_start) adds who asked; it is not a setting.
    client_id = body.get("client_id")
    if client_id is not None and not isinstance(client_id, str):
        raise RequestError("client_id must be a string naming who started the training")
    body = {k: v for k, v in body.items() if k != "client_id"}
    unknown = sorted(set(body) - set(defaults))
    if unknown:
        raise RequestError(f"unknown training parameter(s) {unknown}; the parameters are {sorted(defaults)}")
    params = dict(defaults)
    for key, value in body.items():
        params[key] = _typed(key, value, defaults[key])
    if params.get("publish_if") not in publish_rules:
        raise RequestError(
            f"publish_if must be one of {list(publish_rules)}, got {params.get('publish_if')!r}"
        )
    if "recipe" in params:
        _check_recipe(params["recipe"])
    if {"shrink", "perturb", "toward"} <= set(params):
        from microcalcai.train.warm_start import TOWARD, check_shrink_perturb

        if params["toward"] not in TOWARD:
            raise RequestError(f"toward must be one of {list(TOWARD)}, got {_shown(params['toward'])}")
        try:
            check_shrink_perturb(params["shrink"], params["perturb"], params["toward"])
        except InputError as exc:
            raise RequestError(str(exc)) from None
    return params


def check_labels(datastore, pool, params: dict, workspace=None) -> None:
    """Enough labels for the data the training will make (training_data.with_reference): with the
    default models' reference set, which holds both classes, any new label adds to it; without
    one, enough of each class, from enough patients, to split the labels by patient."""
    from microcalcai.server.training_data import labeled_frame, reference_frame, with_reference

    try:
        frame = labeled_frame(datastore, pool, include_manifest=bool(params["include_manifest_labels"]))
        reference = None
        if workspace is not None and params.get("keep_reference", False):
            reference = reference_frame(workspace)
        if reference is not None and not len(frame):
            raise InputError(
                "no labels to train on yet; save labels first (POST /activelearning/{strategy} proposes ROIs)"
            )
        with_reference(
            frame, reference, float(params["val_fraction"]), int(params["seed"]), int(params["min_per_class"])
        )
    except InputError as exc:
        raise RequestError(str(exc)) from None


def _typed(key: str, value, default):
    kind = type(default)
    if kind is bool:
        if not isinstance(value, bool):
            raise RequestError(f"{key} must be true or false, got {value!r}")
        return value
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not _whole(value):
            raise RequestError(f"{key} must be a whole number, got {_shown(value)}")
        value = int(value)
    elif kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise RequestError(f"{key} must be a number, got {_shown(value)}")
        value = float(value)
    elif kind is str:
        if not isinstance(value, str):
            raise RequestError(f"{key} must be a string, got {_shown(value)}")
        return value
    if key in RANGES:
        low, high = RANGES[key]
        if not low <= value <= high:
            raise RequestError(f"{key} must be between {low} and {high}, got {_shown(value)}")
    if key in OPEN_RANGES:
        low, high = OPEN_RANGES[key]
        if not low < value < high:
            raise RequestError(f"{key} must be above {low} and below {high}, got {_shown(value)}")
    return value


def _whole(value) -> bool:
    return isinstance(value, int) or (math.isfinite(value) and float(value).is_integer())


def _shown(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _check_recipe(name: str) -> None:
    """Only the named recipes (microcalcai/recipes): a path would let a client probe which files
    exist on the server (the answer differed for an existing and a missing file)."""
    from microcalcai.train.recipes import available_recipes, load_recipe

    tasks = {n: load_recipe(n)["task"] for n in available_recipes()}
    named, roi = list(tasks), [n for n, task in tasks.items() if task == "roi"]
    if name not in named:
        # The value is not echoed: it may be a server path, and the answer must not depend on it.
        raise RequestError(
            f"recipe must be one of the named recipes for ROI models {roi} (a file path is not accepted)"
        )
    if name not in roi:
        # A whole-image recipe would publish a whole-image version of an ROI model: the ensemble
        # and active learning would lose a member, and no ROI recipe could retrain it again.
        raise RequestError(
            f"recipe {name!r} trains a {tasks[name]} model; the models here classify "
            f"ROIs: use one of the ROI recipes {roi}"
        )
