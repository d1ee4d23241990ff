"""The engine under :class:`paramdb.ParamDB`: one module per job, each a set of functions over an open
:class:`~paramdb.engine.store.Store` (and, where a model is needed, a :class:`~paramdb.engine.models.Models`).

``ParamDB`` (paramdb/db.py) validates arguments, calls into these modules and shapes their results; the
operator tools (paramdb/ops) and the Ray executor (paramdb/distributed) call them directly. Nothing here
imports ``paramdb.db``, so imports run one way: cli -> db -> engine -> knowledge / storage.

Where a feature plugs in:

- ``store``: opening and creating a store (the one place that knows how); a new part of the on-disk
  layout is opened here.
- ``models``: the base model and embedder, loaded on first need and checked against the store.
- ``parameterize``: document text -> (embeddings, adapters); a new way to turn documents into adapters
  (another augmentation, a translator, a training recipe) replaces or wraps this step; a deferred insert
  (``parameterize="later"``) only embeds, and ``ops/refine`` trains its pending rows later.
- ``commit``: the write protocol (blobs, then the SQL row, then the indexes), the only code that writes rows;
  a new adapter encoding changes what it writes.
- ``ingest``: validation, batching and streaming of an insert on this process (the Ray executor has its own).
- ``search``: retrieval over the derived indexes (``indexes``).
- ``adapters``: reading stored adapters, the per-handle cache, merging k of them for a question; an
  import/export of adapters in another format reads and writes through here.
- ``answer``: retrieve, merge, generate a batch of questions in one of the modes.
"""
