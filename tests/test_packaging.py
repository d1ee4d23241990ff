"""The installed package: every package under paramdb/ is in the wheel, and a wheel built from this checkout,
installed into a fresh virtual environment, migrates a format-1 store with its own (top-level) migrations."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

import pytest

from paramdb.config import FORMAT_VERSION

from stores import FORMAT1_STORE

ROOT = Path(__file__).resolve().parents[1]


def test_every_package_under_paramdb_is_listed_for_the_wheel():
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "paramdb").rglob("__init__.py")}
    found |= {"paramdb." + ".".join(p.parent.relative_to(ROOT).parts)
              for p in (ROOT / "migrations").rglob("__init__.py")}
    assert found <= listed, f"add to pyproject.toml [tool.setuptools] packages: {sorted(found - listed)}"


def _run(*cmd, **kw) -> subprocess.CompletedProcess:
    out = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=300, **kw)
    assert out.returncode == 0, f"{cmd}: {out.stdout[-2000:]}{out.stderr[-2000:]}"
    return out


@pytest.mark.slow
def test_an_installed_wheel_migrates_a_format1_store(tmp_path):
    src = tmp_path / "src"                       # build from a copy: a build leaves build/ and egg-info behind
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    for name in ("paramdb", "migrations"):
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    _run(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w",
         tmp_path / "dist", src)
    [wheel] = (tmp_path / "dist").glob("paramdb-*.whl")

    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", "--without-pip", venv)
    py = venv / "bin" / "python"
    _run(sys.executable, "-m", "pip", "--python", py, "install", "--quiet", "--no-deps", "--no-index", wheel)
    # torch and the other dependencies come from this interpreter's site-packages, appended after the new
    # venv's own, so the paramdb imported is the wheel's (a plain path in a .pth runs none of its .pth files,
    # so an editable install of another checkout stays out too).
    own = Path(_run(py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").stdout.strip())
    (own / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}

    where = _run(py, "-c", "import paramdb.storage.schema as s; print(s.location())", env=env, cwd=tmp_path)
    assert Path(where.stdout.strip()).is_relative_to(own / "paramdb" / "migrations")

    store = tmp_path / "old"
    shutil.copytree(FORMAT1_STORE, store)
    _run(venv / "bin" / "paramdb", "migrate", store, env=env, cwd=tmp_path)
    assert json.loads((store / "paramdb.json").read_text())["format_version"] == FORMAT_VERSION
    checked = _run(venv / "bin" / "paramdb", "check", store, "--json", env=env, cwd=tmp_path)
    assert json.loads(checked.stdout)["ok"] is True
