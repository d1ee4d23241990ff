"""`paramdb check`: does every committed row have sound blobs, and is nothing else wrong with the store?

Errors are committed data at risk: a row whose adapter or embedding is missing or fails its checksum, a
text that no longer matches its recorded sha256, a metadata database that fails its own integrity check,
a derived index that claims to be current but holds other rows. Notices are harmless leftovers that an
interrupted write can legitimately leave (orphan blobs, a stale derived index): they never fail a check.

Repair never deletes a committed row: damaged blobs are rebuilt by parameterizing the row's text again
(same settings, same seed, so the same adapter up to float noise), orphans are deleted under the writer
lock, and derived indexes are rebuilt.

A pending row (``insert --defer``) has no adapter by design: only its embedding is checked, and it is counted
as pending, not as damage. Repair of a pending row whose embedding is damaged embeds its text again and keeps
it pending (training it is ``refine``'s job, not a repair's).
"""
from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field

import sqlalchemy as sa

from paramdb.engine import commit, ingest
from paramdb.engine.models import Models
from paramdb.engine.store import Store
from paramdb.errors import CorruptData, InvalidInput
from paramdb.storage.codec import decode_tensors, decode_vector
from paramdb.storage.lexical import LexicalIndex
from paramdb.storage.meta import PENDING, documents
from paramdb.storage.vectors import VectorIndex
from paramdb.types import Document

ERROR, NOTICE = "error", "notice"


@dataclass
class Finding:
    severity: str          # "error" (committed data at risk) or "notice" (harmless leftover)
    kind: str              # e.g. "adapter-missing", "adapter-checksum", "orphan-blobs", "index-stale"
    subject: str           # the row id, file or part of the store concerned
    detail: str
    repaired: bool = False

    def __str__(self) -> str:
        tag = " (repaired)" if self.repaired else ""
        return f"{self.severity}: {self.kind}: {self.subject}: {self.detail}{tag}"


@dataclass
class CheckReport:
    rows: int = 0
    adapters: int = 0
    embeddings: int = 0
    pending: int = 0       # rows with no adapter yet (insert --defer), which is not damage
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no error is left unrepaired (notices do not count)."""
        return not any(f.severity == ERROR and not f.repaired for f in self.findings)

    def to_json(self) -> dict:
        return {"ok": self.ok, "rows": self.rows, "adapters": self.adapters, "embeddings": self.embeddings,
                "pending": self.pending, "findings": [asdict(f) for f in self.findings]}


def check(store: Store, models: Models | None = None, *, repair: bool = False) -> CheckReport:
    """Inspect (and with ``repair`` fix) an open store. Rebuilding a damaged adapter trains it again, so a
    repair needs the store's ``models``; a check alone loads no model."""
    if repair:
        store.lock.refuse_if_readonly("check --repair")
    if repair and models is None:
        raise InvalidInput("check --repair needs the store's model to rebuild damaged adapters")
    report = CheckReport()
    _check_sql(store, report)
    rows = _rows(store)
    report.rows = len(rows)
    try:
        damaged = _check_blobs(store, rows, report)
        _check_orphans(store, report, repair)
        _check_translator(store, report)
    except CorruptData as exc:         # LMDB's own pages are damaged: no row's blobs can be trusted or rebuilt
        report.findings.append(Finding(ERROR, "lmdb-corrupt", str(store.blobs.path), str(exc)))
        return report
    imported = {r["id"] for r in rows if r.get("adapter_kind") == "imported"}
    for f in report.findings:      # trained elsewhere: its text cannot rebuild it
        if f.subject in imported and f.subject in damaged:
            f.detail += "; an imported adapter cannot be rebuilt from its text: restore a backup or import it again"
    damaged = [d for d in damaged if d not in imported]
    if repair and damaged:
        _reparameterize(store, models, [r for r in rows if r["id"] in damaged], report)
    _check_indexes(store, report, repair)
    return report


def _rows(store: Store) -> list[dict]:
    cols = [documents.c.rowid, documents.c.id, documents.c.text, documents.c.blob_key]
    cols += [documents.c[c] for c in ("text_sha256", "adapter_kind") if c in documents.c]
    with store.meta.transaction() as conn:
        return [dict(r._mapping) for r in conn.execute(sa.select(*cols).order_by(documents.c.rowid))]


def _check_sql(store: Store, report: CheckReport) -> None:
    meta = store.meta
    if meta.url.get_backend_name() != "sqlite":
        return
    with meta.transaction() as conn:
        result = [r[0] for r in conn.exec_driver_sql("PRAGMA integrity_check").fetchall()]
    if result != ["ok"]:
        report.findings.append(Finding(ERROR, "sql-integrity", str(meta.url.database), "; ".join(result)[:300]))


def _check_blobs(store: Store, rows: list[dict], report: CheckReport) -> list[str]:
    """Every row: adapter present and passing its CRC, embedding present and of the store's width."""
    damaged: list[str] = []
    dim = store.config.embedding_dim
    with store.blobs.reader() as r:
        for row in rows:
            problems = []
            adapter, embedding = r.adapter(row["blob_key"]), r.embedding(row["blob_key"])
            if row.get("adapter_kind") == PENDING:
                report.pending += 1              # no adapter yet: nothing to find missing
            elif adapter is None:
                problems.append(("adapter-missing", f"no adapter under blob key {row['blob_key']}"))
            else:
                try:
                    decode_tensors(adapter)
                    report.adapters += 1
                except CorruptData as exc:
                    problems.append(("adapter-checksum", str(exc)))
            if embedding is None:
                problems.append(("embedding-missing", f"no embedding under blob key {row['blob_key']}"))
            else:
                try:
                    if decode_vector(embedding).shape != (dim,):
                        raise CorruptData(f"embedding has {memoryview(embedding).nbytes // 4} values, not {dim}")
                    report.embeddings += 1
                except CorruptData as exc:
                    problems.append(("embedding-corrupt", str(exc)))
            want = row.get("text_sha256")
            if want and hashlib.sha256(row["text"].encode("utf-8")).hexdigest() != want:
                problems.append(("text-checksum", "the stored text does not match its recorded sha256"))
            for kind, detail in problems:
                report.findings.append(Finding(ERROR, kind, row["id"], detail))
            if problems and not any(k == "text-checksum" for k, _ in problems):
                damaged.append(row["id"])
    return damaged


def _check_orphans(store: Store, report: CheckReport, repair: bool) -> None:
    """Blobs no row points at: what a write killed between its LMDB and SQL commits leaves behind."""
    found = commit.orphan_blobs(store)
    if not found:
        return
    finding = Finding(NOTICE, "orphan-blobs", str(store.blobs.path),
                      f"{len(found)} blob keys no row points at (left by an interrupted write)")
    report.findings.append(finding)
    if repair:
        with store.lock.held("check --repair"):      # a writer between its two commits would look orphaned
            commit.delete_orphans(store)
        finding.repaired = True


def _check_translator(store: Store, report: CheckReport) -> None:
    """The translator, when there is one: CRC, format and base model (repair cannot rebuild it: distill can)."""
    from paramdb.engine import translator_blob

    for kind, detail in translator_blob.problems(store.blobs, store.config.model_fingerprint):
        report.findings.append(Finding(ERROR, kind, "translator", f"{detail} (run `paramdb distill` to replace it)"))


def _reparameterize(store: Store, models: Models, rows: list[dict], report: CheckReport) -> None:
    """Rebuild damaged blobs from the row's own text: an upsert of the same document, trained, or for a
    pending row embedded only (it stays pending)."""
    ids = [r["id"] for r in rows]
    stored = {r["id"]: r for r in store.meta.get(ids)}
    for later in (False, True):
        docs = [Document(text=stored[i]["text"], id=i, metadata=stored[i]["metadata"]) for i in ids
                if i in stored and (stored[i]["adapter_kind"] == PENDING) == later]
        if docs:
            ingest.insert(store, docs, ingest.LocalExecutor(models, "later" if later else "train"),
                          upsert=True, batch_size=8)
    for f in report.findings:
        if f.subject in ids and f.kind != "text-checksum":
            f.repaired = True


def _check_indexes(store: Store, report: CheckReport, repair: bool) -> None:
    """A saved index at the current generation must hold exactly the current rows."""
    gen = store.meta.generation()
    live = {rowid for rowid, _, _ in store.meta.all_rows_keys()}
    layout = store.layout
    for name, index in (("vectors", VectorIndex(layout.vectors, store.config.embedding_dim)),
                        ("lexical", LexicalIndex(layout.lexical))):
        if not index.load_or_none(gen):
            finding = Finding(NOTICE, "index-stale", name, "missing or behind the metadata; rebuilt on next use")
        elif set(index.labels()) != live:
            finding = Finding(ERROR, "index-drift", name,
                              f"claims generation {gen} but holds {len(index.labels())} rows, not {len(live)}")
        else:
            continue
        report.findings.append(finding)
        if repair:
            store.indexes.rebuild()
            finding.repaired = True
