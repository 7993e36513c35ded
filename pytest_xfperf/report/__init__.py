"""Reports: terminal summary and JSON."""
