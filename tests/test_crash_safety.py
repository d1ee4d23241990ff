"""SIGKILL a writing process at random points and in the middle of its writes: the store must open, pass
check, and hold exactly the rows committed before the kill (the one operation in flight is all there or not
there at all), each with the very adapter and embedding bytes its writer committed."""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from conftest import FAST_TRAINING
from paramdb import ParamDB
from stores import blob_sha256, meta_url_of, raw_rows
from paramdb.ops.backup import verify
from paramdb.ops.check import check

KILLS = 20
MIN_MID_WRITE = 6      # kills that must land while a write was under way (entered, not returned)

WORKER = textwrap.dedent("""
    import hashlib, json, sys
    sys.path.insert(0, {tests!r})
    import torch; torch.set_num_threads(1)
    from conftest import make_tiny_lm
    from paramdb import ParamDB
    from paramdb.ops.backup import backup

    def say(*parts):
        print(json.dumps(parts), flush=True)

    def sha(b):
        return hashlib.sha256(bytes(b)).hexdigest()

    store, run, archives = {store!r}, {run}, {archives!r}
    with ParamDB.open(store, model=make_tiny_lm()) as db:
        blobs = db.handle.store.blobs
        real_put, real_delete = blobs.put, db.handle.store.meta.delete

        def put(adapters, embeddings):       # the bytes this writer commits, recorded before it writes them
            say("writing", {{k: [sha(adapters[k]), sha(embeddings[k])] for k in adapters}})
            return real_put(adapters, embeddings)

        def delete(ids):
            say("writing", {{}})
            return real_delete(ids)
        blobs.put, db.handle.store.meta.delete = put, delete
        say("ready")
        for step in range(10_000):
            kind = ("insert", "insert", "delete", "upsert", "backup")[step % 5]
            if kind == "insert":
                docs = [{{"id": f"r{{run}}s{{step}}i{{i}}", "text": f"Run {{run}} step {{step}} item {{i}}: Kell ore."}}
                        for i in range(2)]
                say("begin", kind, docs)
                db.insert(docs, batch_size=2)
            elif kind == "upsert":
                victim = db.list(limit=1, offset=1)
                if not victim:
                    continue
                docs = [{{"id": victim[0].id, "text": f"Rewritten at run {{run}} step {{step}}."}}]
                say("begin", kind, docs)
                db.upsert(docs)
            elif kind == "delete":
                victim = db.list(limit=1)
                if not victim:
                    continue
                say("begin", kind, [victim[0].id])
                db.delete(victim[0].id)
            else:
                name = f"{{archives}}/r{{run}}s{{step}}.tar"
                say("begin", kind, name)
                backup(db.handle.store, name)
            say("done")
""")


def apply(state: dict[str, str], kind: str, arg) -> dict[str, str]:
    state = dict(state)
    if kind in ("insert", "upsert"):
        state.update({d["id"]: d["text"] for d in arg})
    elif kind == "delete":
        for doc_id in arg:
            state.pop(doc_id, None)
    return state


def kill_when(proc, rng: random.Random, targeted: bool) -> list[list]:
    """SIGKILL the worker (still running: it never exits on its own) at a random moment or, ``targeted``,
    just after it reports entering its first, second or third write (an insert, another, a delete);
    returns every line it printed."""
    lines = []
    if targeted:
        for _ in range(rng.randint(1, 3)):
            while (line := proc.stdout.readline()) and json.loads(line)[0] != "writing":
                lines.append(json.loads(line))
            lines.append(json.loads(line))
        time.sleep(rng.uniform(0, 0.003))
    else:
        time.sleep(rng.uniform(0.05, 2.5))
    assert proc.poll() is None, "the worker exited before it was killed"
    proc.send_signal(signal.SIGKILL)
    lines += [json.loads(line) for line in proc.stdout.read().splitlines()]
    assert proc.wait() == -signal.SIGKILL
    return lines


@pytest.mark.slow
def test_the_store_survives_sigkill_at_random_points_and_mid_write(tmp_path, tiny_lm, embedder):
    store, archives = tmp_path / "store", tmp_path / "archives"
    archives.mkdir()
    ParamDB.open(store, create=True, model=tiny_lm, embedder=embedder, training=FAST_TRAINING).close()
    rng = random.Random(1234)
    state: dict[str, str] = {}
    written: dict[str, list[str]] = {}      # blob key -> [adapter sha256, embedding sha256], as writers recorded
    done_archives: list[str] = []
    mid_write, in_flight_kinds = 0, []
    for run in range(KILLS):
        proc = subprocess.Popen([sys.executable, "-c", WORKER.format(
            tests=os.path.dirname(__file__), store=str(store), run=run, archives=str(archives))],
            stdout=subprocess.PIPE, text=True)
        assert json.loads(proc.stdout.readline()) == ["ready"]
        lines = kill_when(proc, rng, targeted=run % 2 == 1)
        pending, writing = None, False
        for line in lines:
            if line[0] == "begin":
                pending, writing = (line[1], line[2]), False
            elif line[0] == "writing":
                written.update(line[1])
                writing = True
            elif line[0] == "done":
                state = apply(state, *pending)
                if pending[0] == "backup":
                    done_archives.append(pending[1])
                pending, writing = None, False
        mid_write += writing
        with ParamDB.open(store) as db:
            report = check(db.handle.store, db.handle.models)
            assert report.ok, [str(f) for f in report.findings]
        rows = raw_rows(meta_url_of(store))
        found = {r["id"]: r["text"] for r in rows}
        options = [state] if pending is None else [state, apply(state, *pending)]
        assert found in options, f"run {run}: rows differ from every committed state (in flight: {pending})"
        stored = blob_sha256(store)
        for r in rows:
            key = r["blob_key"]
            assert [stored["adapters"].get(key), stored["embeddings"].get(key)] == written[key], \
                f"run {run}: row {r['id']!r} holds other bytes than its writer committed"
        state = found
        in_flight_kinds.append(pending[0] if pending else "none")
    for name in done_archives + [str(p) for p in archives.glob("*.tar") if str(p) not in done_archives]:
        assert verify(name) == [], name                 # no half-written archive under a real name
    print(f"\n{KILLS} kills, {mid_write} while a write was under way; in flight when killed: "
          f"{ {k: in_flight_kinds.count(k) for k in sorted(set(in_flight_kinds))} }; rows lost: 0")
    assert mid_write >= MIN_MID_WRITE, (mid_write, in_flight_kinds)
