"""ParamDB: an embedded database for Parametric RAG, each document stored with its own LoRA adapter."""
from .db import ParamDB
from .errors import (CorruptData, DuplicateId, FormatError, InvalidFilter, InvalidInput, ModelLoadError,
                     ModelMismatch, ParamDBError, StoreExists, StoreNotFound, UnknownId)
from .types import Answer, Document, Hit

__all__ = ["ParamDB", "Document", "Hit", "Answer", "ParamDBError", "InvalidInput", "InvalidFilter",
           "DuplicateId", "UnknownId", "StoreNotFound", "StoreExists", "ModelMismatch", "FormatError",
           "CorruptData", "ModelLoadError"]
__version__ = "0.1.0"
