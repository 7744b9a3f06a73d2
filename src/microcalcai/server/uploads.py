"""Files a request brings: kept in a folder of its own that is removed when the request ends,
checked as images before anything is stored, and stored in the studies only when asked to.

MONAI Label's own routes copy each upload to a named file in the system's temporary folder and
remove it only after a successful answer; a refused or failed request left it there (DICOMs with
their patient headers included). Here every file of a request lives in `request_folder()`,
which the request guard (asgi.py) removes whatever the outcome. A kill -9 skips that; the folder
name carries the server's process id so that the next start removes what a dead server left.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import shutil
import tempfile
import time
from contextvars import ContextVar
from pathlib import Path

from microcalcai.server.errors import Conflict, RequestError, ServerFault
from microcalcai.server.validation import check_image_file, check_image_id

LOG = logging.getLogger(__name__)
SUFFIXES = {"dicom": ".dcm", "png": ".png", "pgm": ".pgm", "nrrd": ".nrrd", "tiff": ".tif"}
_FOLDERS: ContextVar[list | None] = ContextVar("microcalcai_request_folders", default=None)
FOLDER_PREFIX = "microcalcai-request-"


@contextlib.contextmanager
def request_scope():
    """Around one request: every folder made by `request_folder()` inside it is removed after."""
    folders: list[Path] = []
    token = _FOLDERS.set(folders)
    try:
        yield folders
    finally:
        _FOLDERS.reset(token)
        for folder in folders:
            shutil.rmtree(folder, ignore_errors=True)


def request_folder() -> Path:
    """A private folder for this request's files (made once per request)."""
    folders = _FOLDERS.get()
    if folders is None:  # outside a request (library use): the caller removes it
        return _new_folder()
    if not folders:
        folders.append(_new_folder())
    return folders[0]


def _new_folder() -> Path:
    return Path(tempfile.mkdtemp(prefix=f"{FOLDER_PREFIX}{os.getpid()}-"))


def remove_orphaned_folders(tmp: str | Path | None = None) -> list[Path]:
    """Remove the request folders of server processes that are gone: a kill -9 in the middle of a
    request leaves its folder (an uploaded DICOM with its patient headers, a label) in the
    temporary folder. Folders of running processes, this one included, are kept."""
    from microcalcai.server.training_guard import process_alive

    removed = []
    for folder in Path(tmp or tempfile.gettempdir()).glob(f"{FOLDER_PREFIX}*-*"):
        pid = folder.name[len(FOLDER_PREFIX) :].partition("-")[0]
        if not pid.isdigit() or process_alive(int(pid)):
            continue
        shutil.rmtree(folder, ignore_errors=True)
        if not folder.exists():
            removed.append(folder)
    if removed:
        LOG.info("removed %d request folder(s) left by a server that was killed", len(removed))
    return removed


def display_name(filename: str | None) -> str:
    """The client's file name, short and printable, for messages (never used as a path)."""
    name = (filename or "file").replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(c if c.isprintable() else "?" for c in name) or "file"
    return name if len(name) <= 80 else name[:60] + "..." + name[-12:]


def save_upload(upload, *, field: str = "file") -> tuple[Path, str, str]:
    """Write an uploaded image into the request's folder and check it is an image within the
    limits (header only, nothing decoded). Returns its path (suffix from its content, never from
    the client's name), its format and the name to use in messages."""
    name = display_name(getattr(upload, "filename", None))
    folder = request_folder()
    path = folder / f"{field}.upload"
    try:
        with open(path, "wb") as out:
            shutil.copyfileobj(upload.file, out, 1 << 20)
    except OSError as exc:
        raise storage_fault(exc, "keep the upload while it is checked") from None
    fmt, _, _ = check_image_file(path, name=f"upload {name!r}")
    final = path.with_suffix(SUFFIXES[fmt])
    path.rename(final)
    return final, fmt, name


def storage_fault(exc: OSError, doing: str) -> ServerFault:
    """A server-side storage failure as a 5xx that says what failed, without the server's paths."""
    reason = exc.strerror or type(exc).__name__
    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return ServerFault(
            f"the server could not {doing}: its disk is full ({reason}); tell its operator", 507
        )
    if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return ServerFault(
            f"the server could not {doing}: its studies folder is read-only ({reason}); tell its operator",
            503,
        )
    return ServerFault(f"the server could not {doing} ({reason}); tell its operator", 500)


def _digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


PENDING_FILE = "pending_file"  # image info during a replacement in a new format (_place)
REPLACED_FILE = "replaced_file"


class ImageUploads:
    """Mixin over LocalDatastore: `add_image` stores only a checked, decodable image, never under a
    path, never over an existing study unless `overwrite`, and atomically."""

    INFO_KEYS = ("patient_id", "client_id")

    def add_image(self, image_id, image_filename, image_info, *, overwrite: bool = False, name: str = ""):
        from filelock import FileLock

        from microcalcai.server.images import read_checked

        check_image_id(image_id)
        source = Path(image_filename)
        label = f"upload {name!r}" if name else source.name
        fmt, _, _ = check_image_file(source, name=label)
        read_checked(source, name=label)  # decodes within the header-checked limits, then drops it
        info = _upload_info(image_info, self.INFO_KEYS)
        suffix = SUFFIXES[fmt]
        folder = Path(self._datastore.image_path())
        dest = folder / f"{image_id}{suffix}"
        try:
            with FileLock(self._lock_file):
                return self._place(image_id, source, dest, info, suffix, overwrite)
        except OSError as exc:
            raise storage_fault(exc, f"store image {image_id!r}") from None

    def _place(self, image_id, source: Path, dest: Path, info: dict, suffix: str, overwrite: bool):
        """Under the datastore's lock: refuse, skip or write the image and record it."""
        from monailabel.datastore.local import DataModel, ImageLabelModel

        from microcalcai.atomic import atomic_write_bytes

        old = self._datastore.objects.get(image_id)
        old_file = dest.parent / self._filename(image_id, old.image.ext) if old else None
        if old_file is not None and old_file.is_file():
            if _digest(old_file) == _digest(source):
                return image_id, False
            if not overwrite:
                raise Conflict(
                    f"image id {image_id!r} already holds a different image; choose another id, "
                    "or send overwrite=true to replace it (its labels are kept)"
                )
        # A new format means a new file beside the old one; the index records each step, so that a
        # kill at any point leaves one file per id on the next start (_finish_replacements).
        swap = old_file is not None and old_file != dest
        if swap:
            old.image.info[PENDING_FILE] = dest.name
            self._update_datastore_file(lock=False)
        try:
            # Whole file in memory: uploads are bounded by the request size limit.
            atomic_write_bytes(dest, source.read_bytes())
        except BaseException:
            if swap:  # nothing was replaced: the index forgets the attempt
                old.image.info.pop(PENDING_FILE, None)
                self._update_datastore_file(lock=False)
            raise
        info.update({"ts": int(time.time()), "name": dest.name})
        if swap:
            info[REPLACED_FILE] = old_file.name
        self._datastore.objects[image_id] = ImageLabelModel(
            image=DataModel(info=info, ext=suffix), labels=dict(old.labels) if old else {}
        )
        self._update_datastore_file(lock=False)
        if swap:
            old_file.unlink(missing_ok=True)
            self._datastore.objects[image_id].image.info.pop(REPLACED_FILE, None)  # the model's copy
            self._update_datastore_file(lock=False)
        LOG.info("stored image %s (%s%s)", image_id, suffix, ", replacing the old one" if old else "")
        return image_id, True

    def _reconcile_datastore(self):
        self._finish_replacements()
        return super()._reconcile_datastore()

    def _finish_replacements(self) -> None:
        """Complete or undo the replacements a kill interrupted: a file still PENDING was never
        recorded (the old image stays, the new file goes); a REPLACED one was (it goes).

        Once per process, at its start, under the lock `_place` holds for a whole replacement, on
        the index as it is on disk then: markers found there belong to a process that died (a
        live one holds the lock until it has cleared them), never to a replacement under way."""
        from filelock import FileLock
        from monailabel.datastore.local import LocalDatastoreModel

        if getattr(self, "_replacements_finished", False):
            return
        self._replacements_finished = True
        index = Path(self._datastore_config_path)
        with FileLock(self._lock_file):
            try:
                on_disk = LocalDatastoreModel.model_validate_json(index.read_text())
            except (OSError, ValueError):  # no index yet, or one the start sets aside and rebuilds
                return
            cut = {
                image_id: obj
                for image_id, obj in on_disk.objects.items()
                if PENDING_FILE in obj.image.info or REPLACED_FILE in obj.image.info
            }
            if not cut:
                return
            folder = Path(self._datastore.image_path())
            for image_id, obj in cut.items():
                served = self._filename(image_id, obj.image.ext)
                for key in (PENDING_FILE, REPLACED_FILE):
                    name = obj.image.info.pop(key, None)
                    # Only a sibling of the image's own file, never a path the index was edited to hold.
                    if name and Path(name).name == name and Path(name).stem == image_id and name != served:
                        (folder / name).unlink(missing_ok=True)
                        LOG.warning("image %s: removed %s, left by a replacement cut short", image_id, name)
            on_disk.base_path = self._datastore_path
            self._datastore = on_disk  # the index as it is now, markers cleared, is the one kept
            self._update_datastore_file(lock=False)


def _upload_info(value, keys: tuple[str, ...]) -> dict:
    info = dict(value or {})
    unknown = sorted(set(info) - set(keys))
    if unknown:
        raise RequestError(f"params of an image upload may hold {', '.join(keys)}; got also {unknown}")
    for key, item in info.items():
        if not isinstance(item, str) or len(item) > 64:
            raise RequestError(f"params.{key} must be text of at most 64 characters")
    return info
