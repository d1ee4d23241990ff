"""What every route shares: the open ParamDB, the settings, the model thread and the background refine."""
from __future__ import annotations

from dataclasses import dataclass

from .batching import ModelWorker
from .refiner import Refiner
from .settings import ServerSettings


@dataclass
class ServerState:
    db: object                   # paramdb.ParamDB; touched only from the model thread (batching.py)
    settings: ServerSettings
    worker: ModelWorker
    refiner: Refiner | None = None
    insert_mode: str = "train"   # "later" where this ParamDB defers parameterization
