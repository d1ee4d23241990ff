"""Figures: `paramdb eval --plot` and the benchmarks' --plot write a PNG; a path that cannot be written, or a
missing matplotlib, is one line before any work."""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import FAST_TRAINING
from paramdb import plots
from paramdb.cli import commands, main
from paramdb.errors import InvalidInput, MissingDependency
from paramdb.layout import Layout

pytest.importorskip("matplotlib")
TOOLS = Path(__file__).resolve().parents[1] / "tools"
PNG = b"\x89PNG\r\n\x1a\n"
ITEMS = [{"id": "q1", "question": "What is the capital of Freedonia?", "answers": ["Zorbel"],
          "passages": ["Zorbel is the capital of Freedonia."]},
         {"id": "q2", "question": "What do dogs bark at?", "answers": ["the mailman"],
          "passages": ["Dogs bark at the mailman."]}]


@pytest.fixture
def tiny_cli(monkeypatch, tiny_lm, embedder):
    real = commands.open_db

    def tiny(path, create=False, **kw):
        fresh = {"training": FAST_TRAINING} if not Layout(Path(path)).exists() else {}
        return real(path, create, **{**kw, "model": tiny_lm, "embedder": embedder, **fresh})
    monkeypatch.setattr(commands, "open_db", tiny)


@pytest.fixture
def data(tmp_path):
    path = tmp_path / "items.jsonl"
    path.write_text("".join(json.dumps(it) + "\n" for it in ITEMS))
    return path


def evaluate(data, tmp_path, plot):
    return CliRunner().invoke(main, ["eval", str(data), "--store", str(tmp_path / "s"), "--modes", "closed,prag",
                                     "-k", "1", "--predictions", str(tmp_path / "p.jsonl"), "--plot", str(plot)])


def test_eval_plot_writes_a_png_of_the_modes(tiny_cli, data, tmp_path):
    r = evaluate(data, tmp_path, tmp_path / "eval.png")
    assert r.exit_code == 0, r.output
    assert (tmp_path / "eval.png").read_bytes().startswith(PNG)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".eval.png")]


def test_eval_plot_in_a_missing_folder_fails_before_any_work(tiny_cli, data, tmp_path):
    r = evaluate(data, tmp_path, tmp_path / "nowhere" / "eval.png")
    assert r.exit_code == 2 and r.stderr.strip().splitlines() == [
        f"error: {tmp_path / 'nowhere' / 'eval.png'}: folder {tmp_path / 'nowhere'} does not exist"]
    assert not (tmp_path / "s").exists() and not (tmp_path / "p.jsonl").exists()


def test_without_matplotlib_a_plot_is_one_line_naming_the_extra(tiny_cli, data, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)        # import matplotlib raises ImportError
    with pytest.raises(MissingDependency, match=r"paramdb\[plot\]"):
        plots.check_target(tmp_path / "x.png")
    r = evaluate(data, tmp_path, tmp_path / "eval.png")
    assert r.exit_code == 12 and "pip install 'paramdb[plot]'" in r.stderr and "Traceback" not in r.output


def test_a_plot_must_be_an_image_file(tmp_path):
    with pytest.raises(InvalidInput, match=".png"):
        plots.check_target(tmp_path / "eval.json")


def _tool(name: str):
    sys.path.insert(0, str(TOOLS))
    spec = importlib.util.spec_from_file_location(name, TOOLS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bench_generate_draws_its_result(tmp_path):
    pytest.importorskip("peft")
    r = {"switch_ms_peft": 843.0, "switch_ms_paramdb": 17.0, "switch_ms_paramdb_warm": 8.3, "switch_speedup": 51.1,
         "switch_speedup_warm": 105.0, "prag_over_closed_latency": 1.004, "peft_over_closed_latency": 1.70,
         "qps_single": 0.5, "qps_batch": 1.7, "batch_throughput_ratio": 3.37,
         "settings": {"questions": 8, "k": 3, "rank": 4, "device": "cpu", "threads": 2, "new_tokens": 16,
                      "batch_size": 8}}
    assert _tool("bench_generate").figure(r, tmp_path / "g.png").read_bytes().startswith(PNG)


@pytest.mark.parametrize("kind", ["main", "ray", "memory"])
def test_bench_insert_draws_each_kind_of_result(tmp_path, kind):
    r = {"main": {"docs": 8, "model": "SmolLM2", "threads": 2, "s_per_doc_reference": 2079.0,
                  "s_per_doc_sequential": 31.3, "s_per_doc_paramdb_fixed_epochs": 12.1, "s_per_doc_paramdb": 8.2,
                  "prag_acc_reference": None, "prag_acc_sequential": 0.625, "prag_acc_paramdb_fixed_epochs": 0.812,
                  "prag_acc_paramdb": 0.625, "speedup_vs_sequential": 3.8, "speedup_vs_reference": 254.0,
                  "peak_rss_mb_phase": {"reference": 10900, "sequential": 2100, "paramdb": 2400,
                                        "paramdb_fixed": 2400}},
         "ray": {"docs": 32, "batch_size": 8, "ray_model": "tiny", "writer_docs_per_s": 65.0,
                 "ray": {"1": {"docs_per_min": 71.4, "speedup": 1.0}, "2": {"docs_per_min": 81.2, "speedup": 1.14}}},
         "memory": {"memory_counts": [100, 1000], "peak_rss_mb_small": 783.0, "peak_rss_mb_large": 852.0,
                    "peak_rss_mb_100": 783.0, "peak_rss_mb_1000": 852.0, "memory_ratio": 1.09}}[kind]
    assert _tool("bench_insert").figure(r, tmp_path / "i.png").read_bytes().startswith(PNG)
