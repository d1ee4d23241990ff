"""One exception hierarchy for ParamDB.

Every error a user can cause is a ParamDBError whose message is one line that names the thing at fault
(file and line, id, path). The CLI maps these to exit codes in one place (paramdb/cli/errors.py) and
prints the message without a traceback; anything else is a bug and keeps its traceback.
"""
from __future__ import annotations


class ParamDBError(Exception):
    """Base class: a problem the user can act on. ``exit_code`` is what the CLI exits with."""

    exit_code = 1


class InvalidInput(ParamDBError, ValueError):
    """A document, file, argument or option that cannot be used as given."""

    exit_code = 2


class InvalidFilter(InvalidInput):
    """A ``where=`` filter that is not well formed."""


class DuplicateId(InvalidInput):
    """Insert of an id that is already stored (use upsert to replace it)."""

    def __init__(self, doc_id: str):
        super().__init__(f"duplicate id {doc_id!r}: already in the store (use upsert to replace it)")
        self.doc_id = doc_id


class UnknownId(ParamDBError, KeyError):
    """An id that is not in the store."""

    exit_code = 3

    def __init__(self, doc_id: str):
        super().__init__(f"unknown id {doc_id!r}: no such document in the store")
        self.doc_id = doc_id

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return self.args[0]


class StoreNotFound(ParamDBError):
    """No store at the given path."""

    exit_code = 4


class StoreExists(ParamDBError):
    """A store already exists where a new one was to be created."""

    exit_code = 4


class ModelMismatch(ParamDBError):
    """The store's adapters were trained on a different base model than the one loaded."""

    exit_code = 5


class FormatError(ParamDBError):
    """The store was written in a format this version cannot read (newer, or older and unmigrated)."""

    exit_code = 5


class CorruptData(ParamDBError):
    """Stored bytes failed a checksum or could not be decoded."""

    exit_code = 6


class StoreLocked(ParamDBError):
    """Another process kept the store's writer lock longer than this writer was willing to wait."""

    exit_code = 7


class ModelLoadError(ParamDBError):
    """A base model or embedder could not be found or loaded."""

    exit_code = 5


class ExecutorError(ParamDBError):
    """A distributed executor could not run: Ray not installed, cluster unreachable or short of workers."""

    exit_code = 8


class MetadataUnavailable(ParamDBError):
    """The store's SQL database could not be reached: server down, wrong URL or credentials, missing folder."""

    exit_code = 9


class ReadOnlyStore(ParamDBError):
    """A write to a store opened read-only (``readonly=True``, or files this process cannot write)."""

    exit_code = 10


class DiskFull(ParamDBError):
    """The disk (or the LMDB map) filled up during a write; the write was rolled back, nothing was stored."""

    exit_code = 11


class MissingDependency(ParamDBError):
    """An optional extra a feature needs is not installed (the message names the pip command)."""

    exit_code = 12


class InsertInterrupted(KeyboardInterrupt):
    """Ctrl-C during an insert, carrying what was committed before it: whole batches only, so rerunning the
    same input stores the rest (documents already stored with the same text and metadata are skipped).
    A KeyboardInterrupt, not a ParamDBError: code that stops on Ctrl-C still stops."""

    def __init__(self, committed: list[str]):
        n = len(committed)
        super().__init__(f"interrupted: {n} document{'s' * (n != 1)} committed; "
                         "rerun the same command to insert the rest")
        self.committed = committed


class NoTranslator(ParamDBError):
    """A fast (translated) insert on a store that has no translator yet: `paramdb distill` makes one."""

    exit_code = 13
