"""Logic of the MicrocalcAI Slicer module, shared by the Slicer widget and the web app.

Pure Python over MRML and the MicrocalcAI server's HTTP API: no Qt and no torch, so Slicer
installs it light. The package name is unique so it cannot collide with another extension's.
"""
