"""Measurement: the only package that times or reads memory."""
