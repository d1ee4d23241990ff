"""Operator tasks over whole stores, as functions: each takes an open store (and its models where it needs
one), as ``ParamDB.open(...).handle`` holds them, or a path where the task works on closed files.

    from paramdb import ParamDB
    from paramdb.ops.backup import backup, restore, verify
    from paramdb.ops.check import check
    from paramdb.ops.refine import refine

    with ParamDB.open("mystore") as db:
        store, models = db.handle.store, db.handle.models
        backup(store, "mystore.tar")
        report = check(store, models, repair=True)
        refine(store, models, limit=100)
    verify("mystore.tar"); restore("mystore.tar", "mystore2")

``compact``, ``copy_store`` and ``migrate`` (ops/compact.py, copy.py, migrate.py) take paths: they rewrite or
upgrade a store's files and open it themselves. The CLI's operator commands call the same functions.
"""
