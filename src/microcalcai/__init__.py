"""MicrocalcAI: benign vs malignant classification of mammographic microcalcifications."""

__version__ = "0.1.0"
