"""SIGKILL a writing process at random points: the store must open, pass check, and hold exactly the rows
committed before the kill (the one operation in flight is all there or not there at all)."""
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

KILLS = 20

WORKER = textwrap.dedent("""
    import json, sys
    sys.path.insert(0, {tests!r})
    import torch; torch.set_num_threads(1)
    from conftest import make_tiny_lm
    from paramdb import ParamDB

    def say(*parts):
        print(json.dumps(parts), flush=True)

    store, run, archives = {store!r}, {run}, {archives!r}
    with ParamDB.open(store, model=make_tiny_lm()) as db:
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
                db.backup(name)
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


@pytest.mark.slow
def test_the_store_survives_sigkill_at_random_points(tmp_path, tiny_lm, embedder):
    store, archives = tmp_path / "store", tmp_path / "archives"
    archives.mkdir()
    ParamDB.open(store, create=True, model=tiny_lm, embedder=embedder, training=FAST_TRAINING).close()
    rng = random.Random(1234)
    state: dict[str, str] = {}
    done_archives: list[str] = []
    survived, in_flight_kinds = 0, []
    for run in range(KILLS):
        proc = subprocess.Popen([sys.executable, "-c", WORKER.format(
            tests=os.path.dirname(__file__), store=str(store), run=run, archives=str(archives))],
            stdout=subprocess.PIPE, text=True)
        assert json.loads(proc.stdout.readline()) == ["ready"]
        time.sleep(rng.uniform(0.05, 2.5))
        proc.send_signal(signal.SIGKILL)
        lines = [json.loads(line) for line in proc.stdout.read().splitlines()]
        proc.wait()
        pending = None
        for line in lines:
            if line[0] == "begin":
                pending = (line[1], line[2])
            elif line[0] == "done":
                state = apply(state, *pending)
                if pending[0] == "backup":
                    done_archives.append(pending[1])
                pending = None
        with ParamDB.open(store) as db:
            report = db.check()
            assert report.ok, [str(f) for f in report.findings]
            found = {d.id: d.text for d in db.list()}
        options = [state] if pending is None else [state, apply(state, *pending)]
        assert found in options, f"run {run}: rows differ from every committed state (in flight: {pending})"
        state = found
        in_flight_kinds.append(pending[0] if pending else "none")
        survived += 1
    for name in done_archives + [str(p) for p in archives.glob("*.tar") if str(p) not in done_archives]:
        assert ParamDB.verify(name) == [], name                 # no half-written archive under a real name
    assert survived == KILLS
    print(f"\n{survived} kills survived; in flight when killed: "
          f"{ {k: in_flight_kinds.count(k) for k in sorted(set(in_flight_kinds))} }; rows lost: 0")
    assert {"insert", "delete"} & set(in_flight_kinds), in_flight_kinds   # kills did land mid-write
