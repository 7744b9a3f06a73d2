"""Importers: public mammography data sets as they are distributed -> manifest frames.

Each module reads one format from its public documentation and returns an `ImportReport`
(microcalcai.data.report): the manifest rows plus every source row it skipped and why.
"""
