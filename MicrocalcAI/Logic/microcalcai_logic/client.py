"""The MicrocalcAI server's HTTP API (docs/server-api.md) as plain Python calls.

Every failure becomes a `ServerError` whose message says what happened and what to do:
the server's own one-sentence `detail` for a refused request, plain words for a server that
cannot be reached or does not answer in time.
"""

import json
import os
from dataclasses import dataclass, field
from typing import Any, Optional
from urllib.parse import urlsplit

from .contract import DEFAULT_ROI_SIZE
from .errors import LogicError, ServerError

DEFAULT_URL = "http://127.0.0.1:8000"


def normalise_url(url: str) -> str:
    """'localhost:8000/' -> 'http://localhost:8000'; a clear error for what is not an address."""
    text = (url or "").strip()
    if not text:
        raise LogicError(f"Enter the server's address, e.g. {DEFAULT_URL}.")
    if "://" not in text:
        text = "http://" + text
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise LogicError(f"'{url}' is not a server address: use the form {DEFAULT_URL}.")
    try:
        parts.port  # noqa: B018  (reading the port validates it)
    except ValueError:
        raise LogicError(f"'{url}' has an invalid port number: use the form {DEFAULT_URL}.") from None
    return text.rstrip("/")


@dataclass(frozen=True)
class ModelInfo:
    name: str
    version: str
    threshold: Optional[float]
    members: tuple[str, ...]
    description: str = ""
    arch: str = ""
    default_roi_size: int = DEFAULT_ROI_SIZE
    saliency_methods: tuple[str, ...] = ()
    # a demonstration model (trained on synthetic mammograms) must say so wherever it is shown
    demonstration: bool = False
    intended_use: str = ""
    # the model card's validation metrics (its calibration, where measured: certainty.py)
    val_metrics: dict[str, Any] = field(default_factory=dict)
    # what the model reads: "roi" (a square around calcifications) or "whole_image" (a whole view)
    task: str = "roi"
    default_saliency: str = ""

    @property
    def is_ensemble(self) -> bool:
        return self.name == "ensemble"


@dataclass(frozen=True)
class ServerInfo:
    url: str
    name: str
    version: str
    models: dict[str, ModelInfo]
    strategies: tuple[str, ...]
    scoring: tuple[str, ...]
    trainers: tuple[str, ...]
    train_stats: dict[str, dict[str, Any]] = field(default_factory=dict)

    def model_names(self) -> list[str]:
        """The ensemble first (the recommended answer), then the hosted models by name."""
        names = sorted(name for name in self.models if name != "ensemble")
        return (["ensemble"] if "ensemble" in self.models else []) + names

    def demonstration_notice(self) -> str:
        """What a front end shows beside the models when some are demonstrations ("" if none)."""
        shown = [name for name in self.model_names() if self.models[name].demonstration]
        if not shown:
            return ""
        return "Demonstration model{} {}: {}".format(
            "s" if len(shown) > 1 else "", ", ".join(shown), self.models[shown[0]].intended_use
        )


def _model_info(name: str, entry: dict[str, Any]) -> ModelInfo:
    threshold = entry.get("threshold")
    return ModelInfo(
        name=name,
        version=str(entry.get("version", "")),
        threshold=float(threshold) if threshold is not None else None,
        members=tuple(entry.get("members") or (name,)),
        description=str(entry.get("description", "")),
        arch=str(entry.get("arch", "")),
        default_roi_size=int(entry.get("default_roi_size") or DEFAULT_ROI_SIZE),
        saliency_methods=tuple(entry.get("saliency_methods") or ()),
        demonstration=bool(entry.get("demonstration", False)),
        intended_use=str(entry.get("intended_use") or ""),
        val_metrics=dict(entry.get("val_metrics") or {}),
        task=str(entry.get("task") or "roi"),
        default_saliency=str(entry.get("default_saliency") or ""),
    )


def parse_info(url: str, body: dict[str, Any]) -> ServerInfo:
    models = {name: _model_info(name, entry or {}) for name, entry in (body.get("models") or {}).items()}
    return ServerInfo(
        url=url,
        name=str(body.get("name", "")),
        version=str(body.get("version", "")),
        models=models,
        strategies=tuple(body.get("strategies") or ()),
        scoring=tuple(body.get("scoring") or ()),
        trainers=tuple(body.get("trainers") or ()),
        train_stats=dict(body.get("train_stats") or {}),
    )


class ServerClient:
    """One server, one `requests.Session`. `timeout` is (connect, read) seconds; `token` (default:
    MICROCALCAI_TOKEN) is sent as the server's bearer token."""

    def __init__(self, url: str, timeout: tuple[float, float] = (5.0, 300.0), session=None, token=None):
        import requests

        self.url = normalise_url(url)
        self.timeout = timeout
        self.session = session or requests.Session()
        if session is None:
            self.session.mount("http://", _retrying_adapter())
            self.session.mount("https://", _retrying_adapter())
        token = token or os.environ.get("MICROCALCAI_TOKEN")  # a server beyond loopback asks for it
        if token:
            self.session.headers["Authorization"] = "Bearer " + token

    # -- transport -------------------------------------------------------------------------
    def request(self, method: str, path: str, **kwargs):
        import requests

        kwargs.setdefault("timeout", self.timeout)
        try:
            response = self.session.request(method, self.url + path, **kwargs)
        except (requests.exceptions.Timeout, requests.exceptions.ConnectionError) as error:
            if not _timed_out(error):
                raise ServerError(
                    f"Cannot reach the MicrocalcAI server at {self.url}: check the address, and that the "
                    "server is running (start it with `microcalcai serve`)."
                ) from None
            raise ServerError(
                "The server at {} did not answer within {:.0f} s: it may be busy training; "
                "try again in a moment.".format(self.url, kwargs["timeout"][1])
            ) from None
        if response.status_code >= 400:
            raise ServerError(self._refusal(method, path, response), status=response.status_code)
        return response

    @staticmethod
    def _refusal(method: str, path: str, response) -> str:
        try:
            detail = response.json().get("detail")
        except ValueError:
            detail = None
        if isinstance(detail, list):  # FastAPI's validation answer: one entry per bad field
            detail = "; ".join(
                "{}: {}".format(".".join(str(p) for p in item.get("loc", ())), item.get("msg", ""))
                if isinstance(item, dict)
                else str(item)
                for item in detail
            )
        if detail:
            return f"The server refused the request: {detail}"
        reason = (response.text or "").strip().splitlines()[:1]
        return "The server answered {} {} to {} {}{}.".format(
            response.status_code,
            response.reason or "",
            method,
            path.split("?")[0],
            (": " + reason[0][:200]) if reason else "",
        )

    def json(self, method: str, path: str, **kwargs) -> Any:
        response = self.request(method, path, **kwargs)
        try:
            return response.json()
        except ValueError:
            raise ServerError(
                "The server at {} sent an answer that is not JSON for {}: is this a "
                "MicrocalcAI server?".format(self.url, path.split("?")[0])
            ) from None

    # -- routes ----------------------------------------------------------------------------
    def info(self) -> ServerInfo:
        body = self.json("GET", "/info/")
        if not isinstance(body, dict) or "models" not in body:
            raise ServerError(
                f"The server at {self.url} answered /info/ without models: is this a MicrocalcAI "
                "(MONAI Label) server?"
            )
        return parse_info(self.url, body)

    def infer(
        self,
        model: str,
        params: dict[str, Any],
        image_id: Optional[str] = None,
        upload: Optional[str] = None,
        output: str = "all",
    ) -> tuple[dict[str, Any], Optional[bytes]]:
        """POST /infer/{model}: the JSON answer and the saliency NRRD bytes (None when absent)."""
        query = {"image": image_id or "", "output": output}
        # Always multipart, as the contract asks, with or without an upload.
        fields = {"params": (None, json.dumps(params), "application/json")}
        if upload is None:
            response = self.request("POST", "/infer/" + _quote(model), params=query, files=fields)
        else:
            with open(upload, "rb") as handle:
                fields["file"] = (os.path.basename(upload), handle, "application/octet-stream")
                response = self.request("POST", "/infer/" + _quote(model), params=query, files=fields)
        return _split_infer_answer(response)

    def datastore(self) -> dict[str, Any]:
        return self.json("GET", "/datastore/", params={"output": "all"})

    def image_info(self, image_id: str) -> dict[str, Any]:
        return self.json("GET", "/datastore/image/info", params={"image": image_id})

    def download_image(self, image_id: str, folder: str, progress=None) -> str:
        """Save the datastore's copy of an image in `folder`, keeping its file name's suffix.
        `progress(fraction)` is called per chunk when the server says the size (it may raise to
        stop the download)."""
        response = self.request("GET", "/datastore/image", params={"image": image_id}, stream=True)
        total = int(response.headers.get("content-length") or 0)
        name = _attachment_name(response.headers.get("content-disposition")) or image_id
        safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in os.path.basename(name)) or "image"
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, safe)
        partial = path + ".part"
        done = 0
        try:
            with open(partial, "wb") as handle:
                for chunk in response.iter_content(chunk_size=1 << 20):
                    handle.write(chunk)
                    done += len(chunk)
                    if progress is not None and total:
                        progress(min(done / total, 1.0))
        except BaseException:
            response.close()
            if os.path.exists(partial):
                os.unlink(partial)
            raise
        os.replace(partial, path)
        return path

    def upload_image(self, image_id: str, path: str, progress=None) -> str:
        """PUT /datastore/image (MONAI Label's): add a file to the datastore; returns its id.
        `progress(fraction)` is called as the bytes go out (it may raise to abort the upload)."""
        suffix = ".nrrd" if path.lower().endswith(".nrrd") else os.path.splitext(path)[1] or ".dcm"
        with open(path, "rb") as handle:
            if progress is None:
                files = {
                    "file": (image_id + suffix, handle, "application/octet-stream"),
                    "params": (None, "{}"),
                }
                answer = self.json("PUT", "/datastore/image", params={"image": image_id}, files=files)
            else:
                from requests_toolbelt.multipart.encoder import MultipartEncoder, MultipartEncoderMonitor

                encoder = MultipartEncoder(
                    {"file": (image_id + suffix, handle, "application/octet-stream"), "params": "{}"}
                )
                monitor = MultipartEncoderMonitor(encoder, lambda m: progress(m.bytes_read / max(m.len, 1)))
                answer = self.json(
                    "PUT",
                    "/datastore/image",
                    params={"image": image_id},
                    data=monitor,
                    headers={"Content-Type": monitor.content_type},
                )
        return str(answer.get("image") or image_id)

    def save_label(self, image_id: str, annotation: dict[str, Any], tag: str = "final") -> dict[str, Any]:
        body = json.dumps(annotation).encode("utf-8")
        files = {"label": ("label.json", body, "application/json")}
        return self.json("PUT", "/datastore/label", params={"image": image_id, "tag": tag}, files=files)

    def labels(self, label_id: str, tag: str = "final") -> dict[str, Any]:
        return self.json("GET", "/datastore/label", params={"label": label_id, "tag": tag})

    def next_sample(self, strategy: str, body: dict[str, Any]) -> dict[str, Any]:
        return self.json("POST", "/activelearning/" + _quote(strategy), json=body)

    def train_start(self, model: str, body: dict[str, Any]) -> dict[str, Any]:
        return self.json("POST", "/train/" + _quote(model), json=body)

    def train_status(self) -> dict[str, Any]:
        return self.json("GET", "/train/", params={"all": "false"})

    def train_stop(self) -> dict[str, Any]:
        return self.json("DELETE", "/train/")


def _timed_out(error) -> bool:
    """A timeout, also when it comes wrapped in the ConnectionError requests raises once the
    retry of a GET is used up."""
    import requests
    from urllib3.exceptions import ConnectTimeoutError, NewConnectionError, ReadTimeoutError

    if isinstance(error, requests.exceptions.Timeout):
        return True
    reason = getattr(error.args[0], "reason", None) if error.args else None
    # urllib3's NewConnectionError (refused) derives from ConnectTimeoutError: not a timeout.
    return isinstance(reason, (ReadTimeoutError, ConnectTimeoutError)) and not isinstance(
        reason, NewConnectionError
    )


def _retrying_adapter():
    """Repeat a GET once when the connection fails before an answer: a kept-alive connection the
    server closed while idle (uvicorn does after 5 s, the time it can take to prepare a large
    image) fails on reuse. Uploads and other methods are never repeated."""
    from requests.adapters import HTTPAdapter
    from urllib3.util.retry import Retry

    retry = Retry(total=1, connect=1, read=1, status=0, other=0, allowed_methods=frozenset({"GET", "HEAD"}))
    return HTTPAdapter(max_retries=retry)


def _quote(text: str) -> str:
    from urllib.parse import quote

    return quote(text, safe="")


def _attachment_name(disposition: Optional[str]) -> Optional[str]:
    if not disposition:
        return None
    from email.message import Message

    message = Message()
    message["content-disposition"] = disposition
    return message.get_filename()


def _split_infer_answer(response) -> tuple[dict[str, Any], Optional[bytes]]:
    content_type = response.headers.get("content-type", "")
    if "multipart" not in content_type:
        try:
            return response.json(), None
        except ValueError:
            raise ServerError(
                f"The server's answer to infer is neither JSON nor multipart ({content_type})."
            ) from None
    from requests_toolbelt.multipart.decoder import MultipartDecoder

    answer, saliency = None, None
    for part in MultipartDecoder(response.content, content_type).parts:
        disposition = part.headers.get(b"Content-Disposition", b"").decode("utf-8", "replace")
        if 'name="params"' in disposition:
            answer = json.loads(part.content.decode("utf-8"))
        else:
            saliency = part.content
    if answer is None:
        raise ServerError("The server's answer to infer has no JSON part (params).")
    return answer, saliency
