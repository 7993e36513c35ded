"""Baselines: the stored expectations, keyed by machine, and the gate that checks them."""
