"""The MONAI Label app that serves MicrocalcAI's classifiers (see docs/server-api.md).

Import the pieces directly (``microcalcai.server.launch``, ``microcalcai.server.app``): this
package's ``__init__`` imports nothing heavy, so ``LocalServer`` can be used without MONAI Label
or torch in the calling process.
"""
