"""Losses as pure functions: tensors and floats in, `(loss, metrics)` out (STYLE.md rule 1)."""
