"""Logic of the MicrocalcAI Slicer module, shared by the Slicer widget and the web app.

Pure Python over MRML and the MicrocalcAI server's HTTP API: no Qt and no torch, so Slicer
installs it light. The package name is unique so it cannot collide with another extension's.
Front ends drive `MicrocalcAILogic`; every user-facing failure is a `LogicError`.
"""

from .errors import LogicError, ServerError
from .geometry import PixelRoi
from .logic import MicrocalcAILogic
from .settings import LogicSettings

__all__ = ["LogicError", "LogicSettings", "MicrocalcAILogic", "PixelRoi", "ServerError"]
__version__ = "0.1.0"
