"""The run history: every run's cases in one SQLite file, and the drift test on its series."""
