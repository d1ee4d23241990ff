"""ParamDB: an embedded database for Parametric RAG, each document stored with its own LoRA adapter."""
from .errors import (CorruptData, DiskFull, DuplicateId, FormatError, InsertInterrupted, InvalidFilter, InvalidInput,
                     MetadataUnavailable, ModelLoadError, ModelMismatch, ParamDBError, ReadOnlyStore, StoreExists,
                     StoreNotFound, UnknownId)
from .types import Answer, Document, Hit

__all__ = ["ParamDB", "AnswerOptions", "Document", "Hit", "Answer", "ParamDBError", "InvalidInput", "InvalidFilter",
           "DuplicateId", "UnknownId", "StoreNotFound", "StoreExists", "ModelMismatch", "FormatError",
           "CorruptData", "ModelLoadError", "MetadataUnavailable", "ReadOnlyStore", "DiskFull", "InsertInterrupted"]
__version__ = "0.1.0"


def __getattr__(name: str):
    # ParamDB pulls in torch and transformers (seconds): load it on first use so `paramdb --help` is instant.
    if name == "ParamDB":
        from .db import ParamDB

        return ParamDB
    if name == "AnswerOptions":
        from .options import AnswerOptions

        return AnswerOptions
    raise AttributeError(f"module 'paramdb' has no attribute {name!r}")
