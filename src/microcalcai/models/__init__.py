"""Model zoo: architectures, weights, self-describing model folders, predictors and ensembles.

Names are imported lazily so that ``microcalcai.models.registry`` stays cheap to import (torch is
only needed once a model is built or loaded).
"""

from importlib import import_module

_EXPORTS = {
    "ARCHITECTURES": "registry",
    "ArchSpec": "registry",
    "create_model": "registry",
    "get_arch": "registry",
    "LoadedModel": "artifact",
    "ModelCard": "artifact",
    "card_for": "artifact",
    "load_model": "artifact",
    "read_card": "artifact",
    "save_model": "artifact",
    "EnsemblePredictor": "predictor",
    "ModelPredictor": "predictor",
    "PredictionBatch": "predictor",
    "load_predictor": "predictor",
    "save_ensemble": "ensemble",
    "read_ensemble": "ensemble",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(import_module(f"microcalcai.models.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'microcalcai.models' has no attribute {name!r}")
