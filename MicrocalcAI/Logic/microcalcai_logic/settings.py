"""The Logic's typed settings (plain values, no Qt), remembered between sessions.

Where they are remembered is the front end's choice, through any object with Qt's settings
interface (`value(key)`, `setValue(key, value)`): inside Slicer that is the application's own
`slicer.app.userSettings()` (keys under `MicrocalcAI/`), as Slicer modules do; `MemoryStore` keeps
them for one process (the web page, the self-test, which must not change the user's settings);
`JsonFileStore` is a small JSON file for scripts (written atomically).
"""

import json
import os
import tempfile
from dataclasses import dataclass, field, fields
from typing import Any, Optional

from .client import DEFAULT_URL

SETTINGS_ENV = "MICROCALCAI_LOGIC_SETTINGS"
GROUP = "MicrocalcAI/"
HISTORY_LENGTH = 5
# Saved beside the settings. Every field is saved on each connect, so a stored value equal to the
# default of the version it was saved under was that default, not a choice: it gives way to the
# current default. The defaults that changed, by the version they were the default of:
SETTINGS_VERSION = 3
SUPERSEDED_DEFAULTS = {1: {"strategy": "uncertain"}, 2: {"strategy": "random"}}


@dataclass
class LogicSettings:
    server_url: str = DEFAULT_URL
    model: str = "ensemble"
    roi_size_mm: float = 10.0
    saliency_method: str = "gradcam"
    saliency_opacity: float = 0.5
    show_saliency: bool = True
    # the server's default (server/strategies.py DEFAULT_STRATEGY, AUTO_SWITCH_LABELS says why)
    strategy: str = "auto"
    scoring: str = "entropy"
    annotator: str = ""
    train_model: str = ""
    # the server's /train default: 10 epochs, not fewer, is what raised test AUC with more labels
    # (benchmarks/RESULTS.md, bench_retraining_labels)
    train_epochs: int = 10
    # The last servers connected to, most recent first (the address box offers them).
    server_history: list = field(default_factory=list)
    # Servers the user allowed to receive de-identified images of this machine.
    upload_consent: list = field(default_factory=list)

    def remember_server(self, url: str) -> None:
        self.server_history = ([url] + [u for u in self.server_history if u != url])[:HISTORY_LENGTH]


class MemoryStore:
    """Settings kept in this process only (Qt's settings interface over a dict)."""

    def __init__(self, values: Optional[dict] = None):
        self.values = dict(values or {})

    def value(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    def setValue(self, key: str, value: Any) -> None:  # noqa: N802 (Qt's name)
        self.values[key] = value

    def sync(self) -> None:
        """Nothing to flush (QSettings has it)."""


class JsonFileStore(MemoryStore):
    """Settings in a small JSON file (`MICROCALCAI_LOGIC_SETTINGS` or ~/.config/MicrocalcAI)."""

    def __init__(self, path: Optional[str] = None):
        self.path = path or settings_path()
        try:
            with open(self.path, encoding="utf-8") as handle:
                stored = json.load(handle)
        except (OSError, ValueError):
            stored = {}
        super().__init__(stored if isinstance(stored, dict) else {})

    def sync(self) -> None:
        folder = os.path.dirname(self.path) or "."
        os.makedirs(folder, exist_ok=True)
        # The Logic runs inside Slicer without the microcalcai library (no torch), so it cannot
        # use microcalcai.atomic; same rule: temporary file in the same folder, fsync, replace.
        handle, temporary = tempfile.mkstemp(prefix=".settings-", dir=folder)
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as stream:
                json.dump(self.values, stream, indent=2, sort_keys=True)
                stream.flush()
                os.fsync(stream.fileno())
            os.replace(temporary, self.path)
        except BaseException:
            if os.path.exists(temporary):
                os.unlink(temporary)
            raise


def settings_path() -> str:
    override = os.environ.get(SETTINGS_ENV)
    if override:
        return override
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(base, "MicrocalcAI", "slicer-logic.json")


def _typed(value: Any, default: Any) -> Any:
    """A stored value as the setting's type. QSettings hands back strings for numbers and
    booleans, and a one-item list as a plain string; stored lists are JSON text here."""
    if isinstance(default, bool):
        if isinstance(value, str):
            if value.lower() in ("true", "1"):
                return True
            if value.lower() in ("false", "0"):
                return False
            raise ValueError(value)
        return bool(value)
    if isinstance(default, list):
        items = json.loads(value) if isinstance(value, str) else value
        if not isinstance(items, list) or not all(isinstance(item, str) for item in items):
            raise ValueError(value)
        return items
    return type(default)(value)


def load_settings(store=None) -> LogicSettings:
    """Saved settings, defaults for anything missing or unreadable (a stale value never blocks)."""
    store = store if store is not None else JsonFileStore()
    defaults = LogicSettings()
    values = {}
    try:
        version = int(store.value(GROUP + "settings_version") or 1)
    except (TypeError, ValueError):
        version = 1
    for item in fields(LogicSettings):
        stored = store.value(GROUP + item.name)
        superseded = SUPERSEDED_DEFAULTS.get(version, {}) if version < SETTINGS_VERSION else {}
        if stored is None or (item.name in superseded and superseded[item.name] == stored):
            continue
        try:
            values[item.name] = _typed(stored, getattr(defaults, item.name))
        except (TypeError, ValueError):
            continue
    return LogicSettings(**values)


def save_settings(settings: LogicSettings, store=None) -> None:
    store = store if store is not None else JsonFileStore()
    for item in fields(LogicSettings):
        value = getattr(settings, item.name)
        store.setValue(GROUP + item.name, json.dumps(value) if isinstance(value, list) else value)
    store.setValue(GROUP + "settings_version", SETTINGS_VERSION)
    store.sync()
