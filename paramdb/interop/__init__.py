"""Adapters in and out of ParamDB in other tools' formats (PEFT LoRA folders)."""
