"""What a rerun of an interrupted insert still has to do, decided the same way by every executor.

An insert commits whole batches, so an interrupted one (Ctrl-C, a killed driver) leaves some documents stored
and the rest not. Rerunning the same input must store the rest without training the stored ones again and
without refusing them as duplicates: a document already stored with the same id, text and metadata is skipped.
A taken id with other content is still a DuplicateId, so a real conflict is never hidden. (An upsert skips
none of this: it replaces what is stored, identical or not.)
"""
from __future__ import annotations

from typing import Protocol

from .errors import DuplicateId
from .types import Document


class RowReader(Protocol):
    def get(self, ids: list[str]) -> list[dict]: ...


def unstored(meta: RowReader, batch: list[Document], skipped: list[str]) -> list[Document]:
    """The documents of ``batch`` still to parameterize; appends the ids of identical stored ones to
    ``skipped``."""
    stored = {r["id"]: r for r in meta.get([d.id for d in batch])}
    out = []
    for d in batch:
        row = stored.get(d.id)
        if row is None:
            out.append(d)
        elif row["text"] == d.text and row["metadata"] == d.metadata:
            skipped.append(d.id)
        else:
            raise DuplicateId(d.id)
    return out
