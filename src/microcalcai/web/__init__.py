"""MicrocalcAI in the browser: a trame-slicer page over the Slicer module's Logic.

The page renders Slicer's own MRML scene (slicer-core) on the server and streams the slice view
to the browser. Every decision (ROIs, classification, overlays, labels, samples, training)
is made by `microcalcai_logic`, the same package the Slicer module uses; this package only
holds the page: its state, its layout and controllers that call the Logic.
"""
