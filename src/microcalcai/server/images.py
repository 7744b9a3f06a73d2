"""Source images for the server: resolve a datastore id or an upload, check it, read it once.

Decoding a full mammogram costs 50-500 ms (RLE film scans are the slowest); annotators classify
several ROIs on the same image in a row, so decoded datastore images are kept in memory, up to a
number of bytes (MICROCALCAI_IMAGE_CACHE_MB, default 512). Uploads are never kept: their file
is removed when the request ends. A stored image that cannot be read is remembered as bad, so
active learning skips it instead of failing for everyone (`ScreenedDatastore`).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from microcalcai.errors import MicrocalcError
from microcalcai.server.errors import NotFound, RequestError
from microcalcai.server.validation import check_image_file, check_image_id

LOG = logging.getLogger(__name__)
DEFAULT_CACHE_MB = 512


def cache_budget_bytes() -> int:
    try:
        return max(0, int(os.environ.get("MICROCALCAI_IMAGE_CACHE_MB", DEFAULT_CACHE_MB))) << 20
    except ValueError:
        return DEFAULT_CACHE_MB << 20


@dataclass
class Source:
    image_id: str  # datastore id, or "upload '<file name>'"
    path: Path
    mammogram: object  # microcalcai.io.Mammogram

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.mammogram.shape)  # type: ignore[return-value]


def datastore_image_path(datastore, image_id: str) -> Path:
    """The file of a datastore image; 404 for ids the datastore does not list."""
    check_image_id(image_id)
    try:
        listed = image_id in set(datastore.list_images())
    except Exception:  # a remote datastore that cannot list answers per id below
        listed = True
    if not listed:
        raise NotFound(f"unknown image id {image_id!r}; GET /datastore/?output=all lists the images")
    return image_file(datastore, image_id)


def image_file(datastore, image_id: str) -> Path:
    """The file behind a listed image id (a DICOMweb series folder holds exactly one)."""
    try:
        uri = datastore.get_image_uri(image_id)
    except Exception as exc:
        raise NotFound(
            f"unknown image id {image_id!r} ({type(exc).__name__}); "
            "GET /datastore/?output=all lists the images"
        ) from None
    if not uri:
        raise NotFound(f"unknown image id {image_id!r}; GET /datastore/?output=all lists the images")
    path = Path(uri)
    if path.is_dir():  # a DICOMweb series is cached as a folder of instances; a mammogram has one
        files = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
        if len(files) != 1:
            raise RequestError(
                f"image {image_id!r} is a series of {len(files)} files; a mammogram series holds one image"
            )
        path = files[0]
    return path


def usable_image(datastore, image_id: str) -> tuple[Path, int, int] | None:
    """File, rows and columns of a stored image whose header reads; None (with a logged warning)
    for one that does not, so that training does without it instead of failing for everyone."""
    try:
        path = datastore_image_path(datastore, image_id)
        _, rows, cols = check_image_file(path, name=image_id)
    except (RequestError, OSError) as exc:
        LOG.warning("training skips image %s: %s", image_id, exc)
        return None
    return path, rows, cols


def roi_on_image(roi: dict, rows: int, cols: int, image_id: str) -> bool:
    """The ROI's centre lies on the image (labels saved before that was checked may not)."""
    try:
        inside = -0.5 <= float(roi["x"]) <= cols - 0.5 and -0.5 <= float(roi["y"]) <= rows - 0.5
    except (KeyError, TypeError, ValueError, OverflowError):
        inside = False
    if not inside:
        LOG.warning("training skips an annotation of %s: its ROI %s lies off the image", image_id, roi)
    return inside


class UnreadableImage(RequestError):
    """A stored image that cannot be read (remembered, so active learning leaves it out)."""


class ImageCache:
    """Decoded images by (file, modification time, size), least recently used first out once
    their pixels take more than `max_bytes`; files that failed to decode are remembered."""

    def __init__(self, max_bytes: int | None = None):
        self.max_bytes = cache_budget_bytes() if max_bytes is None else max_bytes
        self._items: OrderedDict[tuple, object] = OrderedDict()
        self._bytes = 0
        self._bad: dict[tuple, str] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _key(path: Path) -> tuple:
        stat = path.stat()
        return (str(path), stat.st_mtime_ns, stat.st_size)

    @property
    def nbytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._items)

    def read(self, path: Path, *, name: str, keep: bool = True) -> object:
        """Check the header (format, size) first, then decode; a damaged file is a 4xx.

        `keep=False` (uploads) decodes without keeping the image."""
        key = self._key(path)
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        try:
            check_image_file(path, name=name)
            mammogram = read_checked(path, name=name)
        except RequestError as exc:
            if not keep:
                raise
            with self._lock:
                self._bad[key] = str(exc)
            raise UnreadableImage(str(exc), status=exc.status) from None
        if keep:
            self._store(key, mammogram)
        return mammogram

    def _store(self, key: tuple, mammogram) -> None:
        size = int(getattr(getattr(mammogram, "pixels", None), "nbytes", 0))
        if size > self.max_bytes:
            return  # one image larger than the whole budget is decoded for each request
        with self._lock:
            if key in self._items:
                return
            self._items[key] = mammogram
            self._bytes += size
            while self._bytes > self.max_bytes and self._items:
                _, old = self._items.popitem(last=False)
                self._bytes -= int(getattr(getattr(old, "pixels", None), "nbytes", 0))

    def known_bad(self, path: Path) -> str | None:
        """Why this file (as it is now) failed to decode, or None."""
        try:
            key = self._key(path)
        except OSError:
            return "the file is gone"
        with self._lock:
            return self._bad.get(key)


class ScreenedDatastore:
    """The datastore as active learning sees it: images whose file cannot be read are left out,
    each with one logged warning, so one bad file never stops the strategies for everyone.

    Each image's header is checked once per file version (cheap: no pixel is decoded); images
    whose pixels failed to decode once are left out until the file changes."""

    def __init__(self, datastore, cache: ImageCache):
        self._inner = datastore
        self._cache = cache
        self._checked: dict[tuple, str | None] = {}
        self._listing: tuple | None = None
        self._lock = threading.Lock()

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def list_images(self):
        listed = list(self._inner.list_images())
        with self._lock:  # strategies ask once per candidate; one screening per moment is enough
            if self._listing and self._listing[0] == listed and time.monotonic() - self._listing[1] < 2:
                return list(self._listing[2])
        good = [i for i in listed if self.problem(i) is None]
        with self._lock:
            self._listing = (listed, time.monotonic(), good)
        return good

    def refresh(self) -> None:
        """Screen again at the next listing (an image just failed to decode)."""
        with self._lock:
            self._listing = None

    def problem(self, image_id: str) -> str | None:
        try:
            path = image_file(self._inner, image_id)
            key = ImageCache._key(path)
        except (RequestError, OSError) as exc:
            return self._warn_once(("missing", image_id), image_id, str(exc))
        known = self._cache.known_bad(path)
        if known:
            return self._warn_once(key, image_id, known)
        with self._lock:
            if key in self._checked:
                return self._checked[key]
        try:
            check_image_file(path, name=image_id)
            problem = None
        except RequestError as exc:
            problem = str(exc)
        return self._warn_once(key, image_id, problem) if problem else self._remember(key, None)

    def _remember(self, key, problem):
        with self._lock:
            self._checked[key] = problem
        return problem

    def _warn_once(self, key, image_id: str, problem: str) -> str:
        with self._lock:
            seen = self._checked.get(key) == problem
            self._checked[key] = problem
        if not seen:
            LOG.warning("active learning skips image %s: %s", image_id, problem)
        return problem


def read_checked(path: Path, *, name: str):
    from microcalcai.io import read_image

    try:
        mammogram = read_image(path)
    except MicrocalcError as exc:
        raise RequestError(
            f"{name}: {str(exc).replace(str(path), path.suffix.lstrip('.') or 'file')}"
        ) from None
    except Exception as exc:  # decoders raise many types on truncated or corrupt data
        raise RequestError(
            f"{name}: the image could not be decoded ({type(exc).__name__}: {exc}); "
            "the file is truncated or damaged"
        ) from None
    if len(mammogram.shape) != 2:
        raise RequestError(f"{name}: image has shape {mammogram.shape}; send a 2D image")
    return mammogram
