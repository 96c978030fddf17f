"""Shared by the ablation scripts (recipe.py, finetune.py): choosing variants by name."""
from __future__ import annotations


def chosen(arg: str, variants: dict) -> list[str]:
    """The comma-separated names of `arg`, each a key of `variants`; exits naming the unknown."""
    names = arg.split(",")
    unknown = [n for n in names if n not in variants]
    if unknown:
        raise SystemExit(f"unknown variants {unknown}; have {sorted(variants)}")
    return names
