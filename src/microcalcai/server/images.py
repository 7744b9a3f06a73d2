"""Source images for the server: resolve a datastore id or an upload, check it, read it once.

Decoding a full mammogram costs 50-500 ms (RLE film scans are the slowest); annotators classify
several ROIs on the same image in a row, so a few decoded images are kept in memory.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from microcalcai.errors import MicrocalcError
from microcalcai.server.errors import NotFound, RequestError
from microcalcai.server.validation import check_image_file, check_image_id


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
    try:
        uri = datastore.get_image_uri(image_id)
    except Exception as exc:
        raise NotFound(
            f"unknown image id {image_id!r} ({exc}); GET /datastore/?output=all lists the images"
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


class ImageCache:
    def __init__(self, capacity: int = 4):
        self.capacity = capacity
        self._items: OrderedDict[tuple, object] = OrderedDict()
        self._lock = threading.Lock()

    def read(self, path: Path, *, name: str) -> object:
        """Check the header (format, size) first, then decode; a damaged file is a 400."""
        stat = path.stat()
        key = (str(path), stat.st_mtime_ns, stat.st_size)
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        check_image_file(path, name=name)
        mammogram = read_checked(path, name=name)
        with self._lock:
            self._items[key] = mammogram
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)
        return mammogram


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
