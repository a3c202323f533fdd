"""Data layer: schema, loaders, filters and splits."""

from lmrec.data.schema import Dataset, FieldType, IdMap

__all__ = ["Dataset", "FieldType", "IdMap"]
