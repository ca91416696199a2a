"""Lazy, robust import of open3d.

open3d's Linux wheels link ``libusb-1.0.so.0``, which minimal images lack. The
``libusb-package`` wheel ships that library; loading it with ``RTLD_GLOBAL`` before importing
open3d lets the dynamic linker resolve it. Always import open3d through ``import_open3d()``.
"""

from __future__ import annotations

import ctypes
import functools
from types import ModuleType


@functools.cache
def import_open3d() -> ModuleType:
    """Return the ``open3d`` module, preloading libusb from ``libusb-package`` first.

    Raises:
        ImportError: with instructions when open3d (or its libusb dependency) cannot be loaded.
    """
    preload_error = None
    try:
        import libusb_package

        path = libusb_package.get_library_path()
        if path is not None:
            ctypes.CDLL(str(path), mode=ctypes.RTLD_GLOBAL)
    except Exception as exc:  # noqa: BLE001 - reported below if open3d then fails
        preload_error = exc
    try:
        import open3d
    except Exception as exc:
        hint = (
            f" (preloading libusb from 'libusb-package' failed: {preload_error!r})"
            if preload_error is not None
            else ""
        )
        raise ImportError(
            "v2x.datasets.o3d: could not import open3d"
            f"{hint}: {exc!r}. Install 'open3d-cpu' (Linux x86_64) or 'open3d' plus "
            "'libusb-package', or install the system package providing libusb-1.0.so.0; "
            "the torch ray-casting backend works without open3d."
        ) from exc
    return open3d
