"""The Logic's typed settings (plain values, no Qt), remembered between sessions.

The Slicer module mirrors them in its `@parameterNodeWrapper` parameter node; the web app
keeps them per process. The file is small JSON, written atomically.
"""

import json
import os
import tempfile
from dataclasses import asdict, dataclass, fields
from typing import Optional

from .client import DEFAULT_URL

SETTINGS_ENV = "MICROCALCAI_LOGIC_SETTINGS"


@dataclass
class LogicSettings:
    server_url: str = DEFAULT_URL
    model: str = "ensemble"
    roi_size_mm: float = 10.0
    saliency_method: str = "gradcam"
    saliency_opacity: float = 0.5
    show_saliency: bool = True
    strategy: str = "uncertain"
    scoring: str = "entropy"
    annotator: str = ""
    train_model: str = ""
    train_epochs: int = 5


def settings_path() -> str:
    override = os.environ.get(SETTINGS_ENV)
    if override:
        return override
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(base, "MicrocalcAI", "slicer-logic.json")


def load_settings(path: Optional[str] = None) -> LogicSettings:
    """Saved settings, defaults for anything missing or unreadable (a stale file never blocks)."""
    path = path or settings_path()
    try:
        with open(path, encoding="utf-8") as handle:
            stored = json.load(handle)
    except (OSError, ValueError):
        return LogicSettings()
    known = {f.name: f.type for f in fields(LogicSettings)}
    defaults = LogicSettings()
    values = {}
    for name, value in stored.items() if isinstance(stored, dict) else ():
        if name in known and isinstance(value, type(getattr(defaults, name))):
            values[name] = value
    return LogicSettings(**values)


def save_settings(settings: LogicSettings, path: Optional[str] = None) -> str:
    path = path or settings_path()
    folder = os.path.dirname(path) or "."
    os.makedirs(folder, exist_ok=True)
    # The Logic runs inside Slicer without the microcalcai library (no torch), so it cannot
    # use microcalcai.atomic; same rule: temporary file in the same folder, fsync, replace.
    handle, temporary = tempfile.mkstemp(prefix=".settings-", dir=folder)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            json.dump(asdict(settings), stream, indent=2, sort_keys=True)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise
    return path
