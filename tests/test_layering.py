"""The package's imports go one way: cli (and the server) -> db -> ops/interop/distributed -> engine ->
knowledge/storage. Read from the source, so a new module that climbs back up fails here, not in review."""
from __future__ import annotations

import ast
from pathlib import Path

import paramdb

PACKAGE = Path(paramdb.__file__).parent
FACADE_CLIENTS = ("paramdb.cli", "paramdb.server")      # above the façade: they may import paramdb.db


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every paramdb module ``path`` imports, relative imports resolved (function-level ones too)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            found.add(mod)
            found |= {f"{mod}.{a.name}" for a in node.names}
    return {m for m in found if m == "paramdb" or m.startswith("paramdb.")}


def _modules() -> dict[str, set[str]]:
    return {_module_name(p): _imports(p) for p in PACKAGE.rglob("*.py") if "migrations" not in p.parts}


def test_no_module_below_the_facade_imports_it():
    climbing = sorted(m for m, deps in _modules().items()
                      if any(d == "paramdb.db" or d.startswith("paramdb.db.") for d in deps)
                      and m not in ("paramdb", "paramdb.db") and not m.startswith(FACADE_CLIENTS))
    assert climbing == []


def test_storage_never_imports_knowledge_or_the_engine():
    bad = sorted((m, d) for m, deps in _modules().items() if m.startswith("paramdb.storage")
                 for d in deps if d.startswith(("paramdb.knowledge", "paramdb.engine", "paramdb.ops")))
    assert bad == []


def test_the_engine_never_imports_ops_interop_or_the_cli():
    bad = sorted((m, d) for m, deps in _modules().items() if m.startswith(("paramdb.engine", "paramdb.knowledge"))
                 for d in deps if d.startswith(("paramdb.ops", "paramdb.interop", "paramdb.cli",
                                                "paramdb.distributed", "paramdb.server")))
    assert bad == []


def test_the_layering_check_sees_a_climb_when_there_is_one(tmp_path):
    probe = PACKAGE / "engine" / "search.py"
    assert "paramdb.engine.store" in _imports(probe)        # relative imports are resolved, so climbs are seen


def test_the_facade_offers_document_verbs_and_no_operator_task():
    from paramdb.db import ParamDB

    public = {n for n in dir(ParamDB) if not n.startswith("_")}
    assert public == {"open", "create", "close", "readonly", "handle", "insert", "upsert", "get", "list", "count",
                      "delete", "generation", "query", "generate", "generate_batch", "stats"}
