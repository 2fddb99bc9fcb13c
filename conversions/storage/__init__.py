"""The shared storages for uploaded sources and finished MP3s: GridFS (`gridfs.py`) and S3 (`s3.py`).

Web and workers run on different machines, so they share files through one of these (or, on one machine, a local
folder). The names re-exported here are the paths settings and migrations use (`conversions.storage.GridFSStorage`).
"""

from .base import READ_MODES, STORAGE_ERRORS, ReadOnlyStoredFile, store_replacing
from .gridfs import GridFSFile, GridFSStorage
from .s3 import S3ObjectFile, S3ObjectReader, S3Storage

__all__ = [
    "store_replacing",
    "READ_MODES",
    "STORAGE_ERRORS",
    "GridFSFile",
    "GridFSStorage",
    "ReadOnlyStoredFile",
    "S3ObjectFile",
    "S3ObjectReader",
    "S3Storage",
]
