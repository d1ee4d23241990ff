"""Operator tasks over whole stores: backup, restore, verify, check and repair."""
