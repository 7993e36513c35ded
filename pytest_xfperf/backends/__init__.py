"""Backends: one module per runtime, all behind the Runner contract of base.py."""
