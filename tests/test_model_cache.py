"""The GGUF conversion cache under concurrent first use: every process gets the one converted model."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from paramdb.knowledge import models
from tiny_gguf import write_tiny_gguf

LOADER = textwrap.dedent("""
    import json, sys
    from paramdb.knowledge.models import load_model
    lm = load_model(sys.argv[1])
    print(json.dumps({"fingerprint": lm.fingerprint}))
""")


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory) -> Path:
    try:
        source = Path(models.default_model_path())
    except Exception as exc:
        pytest.skip(f"packaged GGUF not available: {exc}")
    return write_tiny_gguf(source, tmp_path_factory.mktemp("gguf") / "tiny.gguf")


def test_processes_converting_at_once_into_an_empty_cache_all_succeed_and_agree(tmp_path, tiny_gguf):
    cache = tmp_path / "cache"
    env = {**os.environ, "PARAMDB_CACHE": str(cache), "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(Path(models.__file__).parents[2]), os.environ.get("PYTHONPATH", "")])}
    procs = [subprocess.Popen([sys.executable, "-c", LOADER, str(tiny_gguf)], env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(3)]
    results = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], [err[-2000:] for _, err in results]
    prints = {json.loads(out.strip().splitlines()[-1])["fingerprint"] for out, _ in results}
    assert len(prints) == 1
    folders = sorted(p.name for p in (cache / "models").iterdir() if p.is_dir())
    assert len(folders) == 1 and not folders[0].startswith("."), folders   # no temp folder left behind


def test_a_conversion_that_loses_the_race_keeps_the_winners_copy(tmp_path):
    target = tmp_path / "model"
    target.mkdir()
    (target / "config.json").write_text("{\"winner\": true}")
    mine = tmp_path / ".model.tmp-1"
    mine.mkdir()
    (mine / "config.json").write_text("{\"winner\": false}")
    models._publish(mine, target)
    assert json.loads((target / "config.json").read_text()) == {"winner": True}


def test_a_temp_folder_left_by_a_killed_conversion_is_removed_by_the_next(tmp_path, monkeypatch, tiny_gguf):
    monkeypatch.setenv("PARAMDB_CACHE", str(tmp_path))
    folder = tmp_path / "models"
    folder.mkdir()
    stale = folder / f".{tiny_gguf.stem}-{models._file_digest(tiny_gguf)}.tmp-999999-dead"
    stale.mkdir()
    (stale / "model.safetensors").write_bytes(b"half written")
    converted = models._convert_gguf(tiny_gguf)
    assert (converted / "config.json").exists()
    assert [p.name for p in folder.iterdir() if p.is_dir()] == [converted.name]
