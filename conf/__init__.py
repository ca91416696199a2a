"""Hydra configuration tree shipped with the package (``pkg://v2x.conf``)."""
