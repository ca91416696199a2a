"""Hydra command-line apps; each is a thin wrapper over an importable function."""
