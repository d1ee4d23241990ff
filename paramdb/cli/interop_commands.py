"""``paramdb export`` and ``paramdb import``: adapters to and from PEFT LoRA folders."""
from __future__ import annotations

import click

from .commands import echo_json, open_db
from .output import say, shown_id
from .options import (adapter_weight_option, device_option, json_option, k_option, merge_option, method_option,
                      store_argument, where_options)
from .readers import json_object, read_text


@click.command()
@store_argument
@click.argument("ids", nargs=-1, metavar="[ID...]")
@click.option("--peft", "target", required=True, type=click.Path(file_okay=False), metavar="DIR",
              help="Folder to write: the adapter itself for one ID or --question, DIR/<ID>/ for several.")
@click.option("--question", default=None, metavar="TEXT",
              help="Export the one adapter `generate --mode prag` merges for TEXT (same -k, --merge, weight).")
@k_option
@method_option
@where_options
@merge_option
@adapter_weight_option
@click.option("--force", is_flag=True, help="Replace DIR if it exists and is not empty.")
@device_option
@json_option
def export(store, ids, target, question, k, method, where, merge, adapter_weight, force, device, as_json):
    """Write the adapters of ID... (or of --question's merge) as PEFT LoRA folders, loadable by
    PeftModel.from_pretrained, vLLM, LoRAX and SGLang.

    \b
    Examples:
      paramdb export mystore d1 --peft d1-lora
      paramdb export mystore d1 d2 d3 --peft loras --force
      paramdb export mystore --question "Who invented moonrind?" -k 3 --merge mean --peft moonrind-lora
    """
    if bool(ids) == (question is not None):
        raise click.UsageError("give ID... or --question TEXT (not both)")
    from paramdb.interop.peft_export import export_peft

    with open_db(store, device=device) as db:
        done = export_peft(db.handle.store, db.handle.models, list(ids) or None, target, question=question, k=k,
                           where=where, method=method, merge=merge, adapter_weight=adapter_weight, force=force)
    if as_json:
        echo_json({"path": str(done.path), "folders": {i: str(p) for i, p in done.folders.items()},
                   "base_model": done.base_model, "merged": done.merged, "rank": done.rank,
                   "documents": done.hits or list(done.folders), "pending_skipped": done.skipped})
        return
    if done.merged:
        say(f"wrote the merge of {len(done.hits)} adapters ({', '.join(shown_id(i) for i in done.hits)}), "
            f"rank {done.rank}, to {done.path}")
    else:
        say(f"wrote {len(done.folders)} adapter{'s' * (len(done.folders) != 1)} to {done.path}")
    if done.skipped:
        say(f"note: skipped {len(done.skipped)} pending hits with no adapter yet "
            f"({', '.join(shown_id(i) for i in done.skipped)}): `paramdb refine {store}` trains them", err=True)
    if done.base_model is None:
        say("note: the store's base model has no folder on disk; base_model_name_or_path is empty", err=True)


@click.command(name="import")
@store_argument
@click.argument("folder", type=click.Path(file_okay=False), metavar="DIR")
@click.option("--id", "doc_id", required=True, help="Id of the new row.")
@click.option("--text-file", required=True, type=click.Path(dir_okay=False), metavar="FILE",
              help="The document the adapter holds (UTF-8 text): embedded for retrieval, not trained on.")
@click.option("--metadata", "metadata_json", default=None, metavar="JSON", help="The row's metadata object.")
@device_option
@json_option
def import_(store, folder, doc_id, text_file, metadata_json, device, as_json):
    """Store the PEFT LoRA adapter in DIR (trained elsewhere) as a row, if it fits the store's base model.

    \b
    Examples:
      paramdb import mystore my-lora --id d9 --text-file d9.txt
      paramdb import mystore my-lora --id d9 --text-file d9.txt --metadata '{"src": "vendor"}'
    """
    metadata = None if metadata_json is None else json_object(metadata_json, "--metadata")
    text = read_text(text_file)
    from paramdb.interop.peft_import import import_peft

    with open_db(store, device=device) as db:
        done = import_peft(db.handle.store, db.handle.models, folder, doc_id, text, metadata)
    if as_json:
        echo_json({"id": done.id, "source_rank": done.source_rank, "rank": done.rank,
                   "base_check": done.base_check})
    else:
        say(f"imported '{shown_id(done.id)}' (rank {done.source_rank}"
            f"{f', stored at rank {done.rank}' if done.rank != done.source_rank else ''}; base model "
            f"checked by {'weight fingerprint' if done.base_check == 'fingerprint' else 'module shapes only'})")


INTEROP = [export, import_]
