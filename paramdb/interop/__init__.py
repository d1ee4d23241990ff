"""Adapters in and out of ParamDB in other tools' formats (PEFT LoRA folders), over an open store and its
models, as the operator tasks (paramdb/ops) are:

    from paramdb import ParamDB
    from paramdb.interop.peft_export import export_peft
    from paramdb.interop.peft_import import import_peft

    with ParamDB.open("mystore") as db:
        store, models = db.handle.store, db.handle.models
        export_peft(store, models, ["d1"], "out/d1")
        export_peft(store, models, None, "out/merge", question="Who invented moonrind?", k=3)
        import_peft(store, models, "lora-folder", "d9", "the text it was trained on")
"""
