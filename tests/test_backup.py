"""Backup, restore and verify: snapshots at one instant, every byte checked, nothing outside the store."""
from __future__ import annotations

import io
import json
import os
import stat
import subprocess
import sys
import tarfile
import textwrap
import time

import pytest
from click.testing import CliRunner

from conftest import FAST_TRAINING
from paramdb import ParamDB
from paramdb.cli import main
from paramdb.errors import CorruptData, InvalidInput, StoreExists
from paramdb.ops import archive as arc
from paramdb.ops.backup import backup, restore, verify
from paramdb.ops.check import check

DOCS = [{"id": f"d{i}", "text": f"Document {i} says the river Quell{i} flows north.", "metadata": {"n": i}}
        for i in range(5)]


def adapters_by_id(db) -> dict[str, bytes]:
    rows = db.handle.store.meta.all_rows_keys()
    with db.handle.store.blobs.reader() as r:
        return {doc_id: bytes(r.adapter(key)) for _, doc_id, key in rows}


@pytest.fixture
def filled(db):
    db.insert(DOCS)
    return db


@pytest.fixture
def archive(filled, tmp_path):
    path = tmp_path / "backup.tar"
    backup(filled.handle.store, path)
    return path


def test_restore_gives_back_every_row_and_adapter_bit_for_bit(filled, archive, tmp_path):
    manifest = restore(archive, tmp_path / "restored")
    assert manifest["rows"] == len(DOCS)
    with ParamDB.open(tmp_path / "restored") as copy:
        assert [(d.id, d.text, d.metadata) for d in copy.list()] == \
               [(d.id, d.text, d.metadata) for d in filled.list()]
        assert adapters_by_id(copy) == adapters_by_id(filled)
        assert [h.id for h in copy.query("Quell3 flows north", k=1)] == ["d3"]
        assert check(copy.handle.store, copy.handle.models).ok


def test_manifest_names_format_model_counts_and_member_sums(filled, archive):
    with tarfile.open(archive) as tar:
        manifest = json.loads(tar.extractfile(arc.MANIFEST).read())
    assert manifest["rows"] == len(DOCS)
    assert manifest["model_fingerprint"] == filled.config.model_fingerprint
    assert manifest["format_version"] == filled.config.format_version
    assert set(manifest["members"]) == set(arc.MEMBERS)
    assert all(len(m["sha256"]) == 64 for m in manifest["members"].values())


def test_backup_refuses_to_overwrite_an_archive(filled, archive):
    with pytest.raises(StoreExists):
        backup(filled.handle.store, archive)


def test_restore_refuses_an_existing_store_unless_told(archive, store_path, tmp_path):
    with pytest.raises(StoreExists, match="overwrite"):
        restore(archive, store_path)


def test_restore_with_overwrite_replaces_the_store(filled, archive, store_path):
    filled.insert([{"id": "late", "text": "A row written after the backup."}])
    filled.close()
    restore(archive, store_path, overwrite=True)
    with ParamDB.open(store_path) as db:
        assert sorted(d.id for d in db.list()) == sorted(d["id"] for d in DOCS)
    assert not [p for p in store_path.parent.iterdir() if p.name.startswith(".")]   # no staging left


@pytest.mark.parametrize("where", ["start", "manifest", "adapters", "padding", "end"])
def test_one_flipped_byte_anywhere_is_refused_by_restore_and_verify(archive, tmp_path, where):
    data = bytearray(archive.read_bytes())
    with tarfile.open(archive) as tar:
        members = {m.name: m for m in tar.getmembers()}
    blobs = members[arc.BLOBS]
    offset = {"start": 100, "manifest": members[arc.MANIFEST].offset_data + 10,
              "adapters": blobs.offset_data + blobs.size // 2,
              "padding": blobs.offset_data + blobs.size + (1 if blobs.size % 512 else 0),
              "end": len(data) - 3}[where]
    if where == "padding" and blobs.size % 512 == 0:        # no padding after this member: use the marker's
        m = members[arc.MARKER]
        offset = m.offset_data + m.size + 1
    data[offset] ^= 0x20
    bad = tmp_path / "bad.tar"
    bad.write_bytes(bytes(data))
    with pytest.raises((CorruptData, InvalidInput)):
        restore(bad, tmp_path / "never")
    assert not (tmp_path / "never").exists()
    assert verify(bad)


def _evil_archive(path, good, name: str, link: str | None = None):
    """A copy of a good archive with one extra member (a file or a link) named ``name``."""
    with tarfile.open(good) as src, tarfile.open(path, "w", format=tarfile.GNU_FORMAT) as out:
        for m in src.getmembers():
            out.addfile(m, src.extractfile(m))
        info = tarfile.TarInfo(name)
        if link is None:
            info.size = 4
            out.addfile(info, io.BytesIO(b"evil"))
        else:
            info.type, info.linkname = tarfile.SYMTYPE, link
            out.addfile(info)


@pytest.mark.parametrize("name,link", [("../escape.txt", None), ("/tmp/paramdb-escape.txt", None),
                                       ("blobs.lmdb/../../escape.txt", None), ("meta.link", "/etc/passwd"),
                                       ("blobs.lmdb/lock.mdb", "../../outside")])
def test_archives_reaching_outside_the_store_are_refused(archive, tmp_path, name, link):
    evil = tmp_path / "evil.tar"
    _evil_archive(evil, archive, name, link)
    with pytest.raises(InvalidInput, match="refusing"):
        restore(evil, tmp_path / "target" / "store")
    assert not (tmp_path / "escape.txt").exists() and not os.path.exists("/tmp/paramdb-escape.txt")
    assert not (tmp_path / "target" / "store").exists()


def test_store_files_and_archives_are_readable_by_their_owner_only(filled, archive, store_path):
    filled.close()
    assert stat.S_IMODE(archive.stat().st_mode) == 0o600
    for path in [store_path, *store_path.rglob("*")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode & 0o077 == 0, f"{path} is {oct(mode)}"


def test_verify_finds_a_live_store_sound_and_names_a_damaged_adapter(filled, store_path):
    assert verify(store_path) == []
    _corrupt_adapter(filled, "d2")
    problems = verify(store_path)
    assert len(problems) == 1 and "d2" in problems[0] and "adapter-checksum" in problems[0]


def _corrupt_adapter(db, doc_id: str) -> None:
    key = db.handle.store.meta.get([doc_id])[0]["blob_key"]
    raw = bytearray(db.handle.store.blobs.get_adapter(key))
    raw[-5] ^= 0xFF
    db.handle.store.blobs.put({key: bytes(raw)}, {})
    db.handle.store.cache.clear()


BACKGROUND_WRITER = textwrap.dedent("""
    import sys; sys.path.insert(0, {tests!r})
    import torch; torch.set_num_threads(1)
    from conftest import make_tiny_lm
    from paramdb import ParamDB
    with ParamDB.open({store!r}, model=make_tiny_lm()) as db:
        for b in range(1000):
            db.insert([{{"id": f"b{{b}}-{{i}}", "text": f"Batch {{b}} row {{i}} names the lake Vorn{{b}}."}}
                       for i in range(3)])
            print(b, flush=True)
""")


def test_a_backup_taken_during_inserts_restores_exactly_the_rows_of_one_instant(filled, store_path, tmp_path):
    filled.close()
    writer = subprocess.Popen([sys.executable, "-c", BACKGROUND_WRITER.format(
        tests=os.path.dirname(__file__), store=str(store_path))], stdout=subprocess.PIPE, text=True)
    try:
        writer.stdout.readline()                       # at least one batch committed
        with ParamDB.open(store_path) as live:
            backup(live.handle.store, tmp_path / "hot.tar")
        writer.stdout.readline()                       # and the writer kept going after the backup
        assert writer.poll() is None
    finally:
        writer.kill()
        writer.wait()
    restore(tmp_path / "hot.tar", tmp_path / "hot")
    assert verify(tmp_path / "hot") == []
    with ParamDB.open(tmp_path / "hot") as hot, ParamDB.open(store_path) as live:
        ids = {d.id for d in hot.list()}
        batches = {i.split("-")[0] for i in ids if i.startswith("b")}
        n = len(batches)
        assert batches == {f"b{b}" for b in range(n)} and n >= 1          # a prefix of whole batches
        assert ids == {d["id"] for d in DOCS} | {f"b{b}-{i}" for b in range(n) for i in range(3)}
        live_adapters = adapters_by_id(live)
        assert all(live_adapters[i] == a for i, a in adapters_by_id(hot).items())


def test_cli_backup_verify_restore_round_trip(filled, archive, store_path, tmp_path):
    filled.close()
    runner = CliRunner()
    out = runner.invoke(main, ["backup", str(store_path), str(tmp_path / "cli.tar"), "--json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)["rows"] == len(DOCS)
    assert runner.invoke(main, ["verify", str(tmp_path / "cli.tar")]).exit_code == 0
    again = runner.invoke(main, ["restore", str(tmp_path / "cli.tar"), str(store_path)])
    assert again.exit_code == 4 and "--force" in again.output or "overwrite" in again.output
    done = runner.invoke(main, ["restore", str(tmp_path / "cli.tar"), str(tmp_path / "r"), "--json"])
    assert done.exit_code == 0 and json.loads(done.output)["rows"] == len(DOCS)


def test_cli_verify_exits_non_zero_naming_the_problem(archive, tmp_path):
    data = bytearray(archive.read_bytes())
    data[len(data) // 2] ^= 1
    (tmp_path / "bad.tar").write_bytes(bytes(data))
    out = CliRunner().invoke(main, ["verify", str(tmp_path / "bad.tar")])
    assert out.exit_code == 1 and "bad.tar" in out.output


def test_a_store_on_postgresql_backs_up_and_restores_to_a_local_store(tmp_path, pg_url, tiny_lm, embedder):
    with ParamDB.open(tmp_path / "pg", create=True, model=tiny_lm, embedder=embedder, meta_url=pg_url,
                      training=FAST_TRAINING) as db:
        db.insert(DOCS)
        db.delete("d4")                                   # the rowid counter is above the largest rowid
        backup(db.handle.store, tmp_path / "pg.tar")
        expected, blobs = [(d.id, d.text, d.metadata) for d in db.list()], adapters_by_id(db)
    restore(tmp_path / "pg.tar", tmp_path / "local")
    with ParamDB.open(tmp_path / "local", model=tiny_lm) as local:
        assert [(d.id, d.text, d.metadata) for d in local.list()] == expected
        assert adapters_by_id(local) == blobs and check(local.handle.store, local.handle.models).ok
        local.insert([{"id": "new", "text": "A row after the restore."}])
        assert local.handle.store.meta.get(["new"])[0]["rowid"] == len(DOCS) + 1     # deleted rowid 5 not reused


def test_cli_operations_on_bad_paths_give_one_line_errors_and_change_nothing(filled, store_path, tmp_path):
    filled.close()
    before = sorted(p.name for p in store_path.iterdir())
    runner = CliRunner()
    missing = runner.invoke(main, ["backup", str(store_path), str(tmp_path / "nowhere" / "b.tar")])
    assert missing.exit_code == 2 and missing.output.count("\n") == 1 and "is not a folder" in missing.output
    (tmp_path / "empty").mkdir()
    not_a_store = runner.invoke(main, ["verify", str(tmp_path / "empty")])
    assert not_a_store.exit_code == 4 and "no store" in not_a_store.output
    bad_merge = runner.invoke(main, ["generate", str(store_path), "a question", "--merge", "max"])
    assert bad_merge.exit_code == 2 and "--merge" in bad_merge.output
    bad_weight = runner.invoke(main, ["generate", str(store_path), "a question", "--adapter-weight", "-1"])
    assert bad_weight.exit_code == 2 and "--adapter-weight" in bad_weight.output
    assert sorted(p.name for p in store_path.iterdir()) == before
