"""PCD (Point Cloud Data, PCL v0.7) reader and writer: ``ascii``, ``binary``, ``binary_compressed``.

The format, as PCL writes it:

* an ASCII header, one ``KEY value…`` line each: ``VERSION``, ``FIELDS`` (names), ``SIZE``
  (bytes per element), ``TYPE`` (``F`` float, ``U`` unsigned, ``I`` signed), ``COUNT`` (elements
  per field), ``WIDTH``, ``HEIGHT``, ``VIEWPOINT`` (tx ty tz qw qx qy qz), ``POINTS``, and last
  ``DATA ascii|binary|binary_compressed``; ``#`` starts a comment;
* ``ascii``: one point per line, whitespace-separated, fields in header order;
* ``binary``: ``POINTS`` packed little-endian records (array of structs, no padding);
* ``binary_compressed``: ``uint32 compressed_size``, ``uint32 uncompressed_size``, then an LZF
  stream whose decompressed bytes are the fields laid out one after another (struct of arrays:
  all ``x``, then all ``y``, …).

LZF (liblzf's format, used by PCL) is implemented in pure Python (``v2x.datasets.lzf``:
``lzf_decompress``, ``lzf_compress``, also reachable here); no compiled package is needed.
DAIR-V2X ships ``binary`` and ``binary_compressed`` files with fields ``x y z intensity``
(intensity stored 0–255).

Every error raises ``ValueError`` naming the file and the header field or data section at fault.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from v2x.common import atomic_write_bytes
from v2x.datasets.lzf import lzf_compress, lzf_decompress  # noqa: F401 - also reachable here

PCD_DATA_KINDS: tuple[str, ...] = ("ascii", "binary", "binary_compressed")

_TYPE_CODES = {
    ("F", 4): "<f4",
    ("F", 8): "<f8",
    ("U", 1): "<u1",
    ("U", 2): "<u2",
    ("U", 4): "<u4",
    ("U", 8): "<u8",
    ("I", 1): "<i1",
    ("I", 2): "<i2",
    ("I", 4): "<i4",
    ("I", 8): "<i8",
}


def import_open3d():
    """Import open3d, preloading ``libusb-1.0`` (RTLD_GLOBAL) that its Linux wheels link to.

    Uses ``v2x.datasets.o3d.import_open3d`` when that helper exists, else does the preload here.
    """
    try:
        from v2x.datasets.o3d import import_open3d as shared_import
    except ImportError:
        shared_import = None
    if shared_import is not None:
        return shared_import()
    try:
        import ctypes

        import libusb_package

        ctypes.CDLL(str(libusb_package.get_library_path()), mode=ctypes.RTLD_GLOBAL)
    except (ImportError, OSError, TypeError):
        pass
    import open3d

    return open3d


# ----------------------------------------------------------------------------------------- PCD


@dataclass
class PcdCloud:
    """A parsed PCD file.

    Attributes:
        fields: field name → ``[N]`` (COUNT 1) or ``[N, COUNT]`` array in the file's dtype.
        header: header keys (``VERSION``, ``FIELDS``, …, ``DATA``) → raw string values.
        num_points: N.
    """

    fields: dict[str, np.ndarray]
    header: dict[str, str] = field(default_factory=dict)
    num_points: int = 0


def _parse_header(raw: bytes, where: str) -> tuple[dict[str, str], int]:
    """Return the header dict and the byte offset where the data section starts."""
    header: dict[str, str] = {}
    pos = 0
    while True:
        end = raw.find(b"\n", pos)
        if end < 0:
            raise ValueError(f"{where}: field 'DATA' header line missing (file ends in the header)")
        try:
            line = raw[pos:end].decode("ascii").strip()
        except UnicodeDecodeError:
            raise ValueError(f"{where}: header is not ASCII near byte {pos}") from None
        pos = end + 1
        if not line or line.startswith("#"):
            continue
        key, *rest = line.split(None, 1)  # PCL splits header lines on spaces, tabs and \r
        header[key.upper()] = rest[0].strip() if rest else ""
        if key.upper() == "DATA":
            return header, pos
        if len(header) > 64:
            raise ValueError(f"{where}: field 'DATA' header line not found in the first 64 keys")


def _layout(header: dict[str, str], where: str) -> tuple[list[str], np.dtype, int]:
    """Field names, the packed record dtype and the point count from a parsed header."""
    for key in ("FIELDS", "SIZE", "TYPE", "POINTS"):
        if key not in header:
            raise ValueError(f"{where}: field '{key}' missing from the PCD header")
    names = header["FIELDS"].split()
    sizes = header["SIZE"].split()
    types = header["TYPE"].split()
    counts = header.get("COUNT", " ".join("1" for _ in names)).split()
    if not (len(names) == len(sizes) == len(types) == len(counts)):
        raise ValueError(
            f"{where}: field 'FIELDS' has {len(names)} names but SIZE/TYPE/COUNT have "
            f"{len(sizes)}/{len(types)}/{len(counts)} entries"
        )
    seen: dict[str, int] = {}
    dtype_fields = []
    for name, size, type_code, count in zip(names, sizes, types, counts):
        try:
            code = _TYPE_CODES[(type_code.upper(), int(size))]
            count_int = int(count)
        except (KeyError, ValueError):
            raise ValueError(
                f"{where}: field 'TYPE'/'SIZE' of '{name}' is {type_code}{size} (count {count}); "
                "expected F4, F8, U1-U8 or I1-I8 and an integer COUNT"
            ) from None
        if count_int < 1:
            raise ValueError(
                f"{where}: field 'COUNT' of '{name}' is {count}; expected an integer >= 1"
            )
        unique = name if name not in seen else f"{name}_{seen[name]}"  # PCL pads with '_' fields
        seen[name] = seen.get(name, 0) + 1
        dtype_fields.append((unique, code) if count_int == 1 else (unique, code, (count_int,)))
    try:
        num_points = int(header["POINTS"])
    except ValueError:
        raise ValueError(
            f"{where}: field 'POINTS' must be an integer, got {header['POINTS']!r}"
        ) from None
    if num_points < 0:
        raise ValueError(f"{where}: field 'POINTS' must be >= 0, got {num_points}")
    if "WIDTH" in header and "HEIGHT" in header:
        try:
            width, height = int(header["WIDTH"]), int(header["HEIGHT"])
        except ValueError:
            raise ValueError(
                f"{where}: field 'WIDTH'/'HEIGHT' must be integers, got "
                f"{header['WIDTH']!r}/{header['HEIGHT']!r}"
            ) from None
        if width * height != num_points:
            raise ValueError(
                f"{where}: field 'POINTS' is {num_points} but WIDTH x HEIGHT is {width} x {height}"
                f" = {width * height}; expected them to agree"
            )
    return [f[0] for f in dtype_fields], np.dtype(dtype_fields), num_points


def read_pcd(path: str | os.PathLike) -> PcdCloud:
    """Read a PCD file in any of the three data encodings.

    Raises ``ValueError`` naming the file and field for a missing file, a malformed header, or a
    data section shorter or longer than the header promises.
    """
    where = str(path)
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise ValueError(f"{where}: file not found (expected a .pcd point cloud)") from None
    header, start = _parse_header(raw, where)
    names, dtype, num_points = _layout(header, where)
    kind = header["DATA"].lower()
    body = raw[start:]
    if kind == "ascii":
        records = _read_ascii(body, dtype, num_points, where)
    elif kind == "binary":
        need = num_points * dtype.itemsize
        if len(body) < need:
            raise ValueError(
                f"{where}: field 'DATA' (binary) is truncated: {len(body)} bytes, "
                f"expected {need} for {num_points} points of {dtype.itemsize} bytes"
            )
        if len(body) - need >= max(dtype.itemsize, 1):  # (a trailing newline is no point)
            raise ValueError(
                f"{where}: field 'DATA' (binary) holds more points than the header promises: "
                f"{len(body)} bytes, expected {need} for POINTS {num_points} of "
                f"{dtype.itemsize} bytes"
            )
        records = np.frombuffer(body, dtype=dtype, count=num_points)
    elif kind == "binary_compressed":
        records = _read_compressed(body, dtype, num_points, where)
    else:
        raise ValueError(f"{where}: field 'DATA' is {kind!r}; expected one of {PCD_DATA_KINDS}")
    fields = {name: np.array(records[name]) for name in names}
    return PcdCloud(fields=fields, header=header, num_points=num_points)


def _read_ascii(body: bytes, dtype: np.dtype, num_points: int, where: str) -> np.ndarray:
    width = sum(int(np.prod(dtype[name].shape or (1,))) for name in dtype.names)
    table = _ascii_table(body, width) if num_points else None
    if table is not None and table.shape == (num_points, width):
        return _records(table, dtype)
    # (else line by line, naming what is wrong: fewer or more lines, a short or bad line)
    lines = [ln for ln in body.decode("ascii", errors="replace").splitlines() if ln.strip()]
    if len(lines) < num_points:
        raise ValueError(
            f"{where}: field 'DATA' (ascii) is truncated: {len(lines)} lines, expected {num_points}"
        )
    if len(lines) > num_points:
        raise ValueError(
            f"{where}: field 'DATA' (ascii) is longer than the header promises: {len(lines)} "
            f"lines, expected POINTS {num_points}"
        )
    if num_points == 0:
        return np.zeros(0, dtype=dtype)
    try:
        table = np.array([ln.split() for ln in lines[:num_points]], dtype=np.float64)
    except ValueError:
        table = None
    if table is None or table.ndim != 2 or table.shape[1] != width:
        raise ValueError(
            f"{where}: field 'DATA' (ascii) point {_bad_ascii_line(lines, width)} is not "
            f"{width} numbers"
        )
    return _records(table, dtype)


def _ascii_table(body: bytes, width: int) -> np.ndarray | None:
    """``[lines, width]`` float64 of an ``ascii`` data section by numpy's C parser (OPV2V's
    files are ascii: 2–3× the line-by-line parse); ``None`` when it cannot read it."""
    import io

    try:
        table = np.loadtxt(io.BytesIO(body), dtype=np.float64, ndmin=2, comments=None)
    except ValueError:
        return None
    return table if table.shape[1:] == (width,) else None


def _records(table: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """The ``[N, width]`` table's columns as ``dtype``'s fields, in header order."""
    records = np.zeros(table.shape[0], dtype=dtype)
    col = 0
    for name in dtype.names:
        count = int(np.prod(dtype[name].shape or (1,)))
        values = table[:, col : col + count]
        records[name] = values[:, 0] if count == 1 else values
        col += count
    return records


def _bad_ascii_line(lines: list[str], width: int) -> str:
    """``"<index> (<text>)"`` of the first data line that is not ``width`` numbers."""
    for i, line in enumerate(lines):
        tokens = line.split()
        try:
            [float(t) for t in tokens]
        except ValueError:
            tokens = []
        if len(tokens) != width:
            text = line.strip()
            return f"{i} ({text[:60] + '…' if len(text) > 60 else text!r})"
    return "?"


def _read_compressed(body: bytes, dtype: np.dtype, num_points: int, where: str) -> np.ndarray:
    if len(body) < 8:
        raise ValueError(f"{where}: field 'DATA' (binary_compressed) is missing its size words")
    compressed_size, raw_size = np.frombuffer(body[:8], dtype="<u4")
    if len(body) - 8 < compressed_size:
        raise ValueError(
            f"{where}: field 'DATA' (binary_compressed) is truncated: {len(body) - 8} bytes, "
            f"expected {compressed_size}"
        )
    need = num_points * dtype.itemsize
    if raw_size != need:
        raise ValueError(
            f"{where}: field 'DATA' (binary_compressed) uncompressed size {raw_size} does not match "
            f"{num_points} points of {dtype.itemsize} bytes"
        )
    plain = lzf_decompress(body[8 : 8 + compressed_size], int(raw_size), where)
    records = np.zeros(num_points, dtype=dtype)
    offset = 0
    for name in dtype.names:
        sub = dtype[name]
        nbytes = num_points * sub.itemsize
        column = np.frombuffer(
            plain,
            dtype=sub.base,
            count=num_points * max(1, sub.itemsize // sub.base.itemsize),
            offset=offset,
        )
        records[name] = column.reshape((num_points,) + sub.shape)
        offset += nbytes
    return records


def read_pcd_xyzi(
    path: str | os.PathLike, *, intensity_scale: float = 1.0
) -> tuple[np.ndarray, int]:
    """Read ``x y z intensity`` from a PCD file.

    Args:
        path: the ``.pcd`` file.
        intensity_scale: multiplies the stored intensity (DAIR stores 0–255: use ``1 / 255``).

    Returns:
        ``points [N, 4]`` float32 (x, y, z, intensity) with rows whose x/y/z are not finite
        removed (PCL marks "no return" with NaN), and the number of rows removed.
    """
    cloud = read_pcd(path)
    for name in ("x", "y", "z", "intensity"):
        if name not in cloud.fields:
            raise ValueError(
                f"{path}: field '{name}' missing from the PCD header FIELDS "
                f"({' '.join(cloud.fields)}); expected x y z intensity"
            )
    intensity = scalar_field(cloud, "intensity", path).astype(np.float64) * intensity_scale
    return finite_xyzi(cloud, intensity, path)


def scalar_field(cloud: PcdCloud, name: str, path: str | os.PathLike) -> np.ndarray:
    """``cloud``'s field ``name`` as ``[N]`` (one value per point); ``ValueError`` naming
    ``path`` and the field's ``COUNT`` when the header gives it more than one."""
    values = cloud.fields[name]
    if values.ndim != 1:
        raise ValueError(
            f"{path}: field 'COUNT' of '{name}' is {values.shape[1]}; "
            "expected 1 (one value per point)"
        )
    return values


def finite_xyzi(
    cloud: PcdCloud, intensity: np.ndarray, path: str | os.PathLike
) -> tuple[np.ndarray, int]:
    """``points [N, 4]`` float32: ``cloud``'s x, y, z and ``intensity [N]``, without the rows
    whose values are not finite (PCL marks "no return" with NaN), and the number removed.
    ``ValueError`` naming ``path`` when x, y or z has more than one value per point."""
    xyz = [scalar_field(cloud, name, path).astype(np.float64) for name in ("x", "y", "z")]
    points = np.stack([*xyz, intensity], axis=1)
    finite = np.all(np.isfinite(points), axis=1)
    return points[finite].astype(np.float32), int((~finite).sum())


def write_pcd(
    path: str | os.PathLike,
    points: np.ndarray,
    data: str = "binary",
    *,
    intensity_scale: float = 1.0,
    intensity_as_rgb: bool = False,
) -> None:
    """Write ``points [N, 4]`` (x, y, z, intensity) as a PCL v0.7 PCD with four ``F4`` fields.

    Args:
        path: destination; parent folders are created. Written atomically (temp file + rename).
        points: ``[N, 4]`` float array.
        data: ``"ascii"``, ``"binary"`` or ``"binary_compressed"`` (LZF).
        intensity_scale: the stored intensity is ``points[:, 3] * intensity_scale``.
        intensity_as_rgb: store the intensity (clipped to 0–1) as Open3D's packed colour
            instead: a ``U4`` field ``rgb`` with it in the red byte (``round(255 · i) << 16``),
            as OPV2V's files hold it.
    """
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 4:
        raise ValueError(
            f"{path}: field 'points' must be [N, 4] (x, y, z, intensity), got {points.shape}"
        )
    if data not in PCD_DATA_KINDS:
        raise ValueError(f"{path}: field 'data' must be one of {PCD_DATA_KINDS}, got {data!r}")
    last = ("rgb", "<u4") if intensity_as_rgb else ("intensity", "<f4")
    values = np.zeros(points.shape[0], dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), last])
    for i, name in enumerate("xyz"):
        values[name] = points[:, i]
    if intensity_as_rgb:
        red = np.rint(np.clip(points[:, 3], 0.0, 1.0) * 255.0).astype(np.uint32)
        values["rgb"] = red << 16
    else:
        values["intensity"] = points[:, 3] * intensity_scale
    n = values.shape[0]
    header = (
        "# .PCD v0.7 - Point Cloud Data file format\n"
        "VERSION 0.7\n"
        f"FIELDS x y z {last[0]}\n"
        "SIZE 4 4 4 4\n"
        f"TYPE F F F {'U' if intensity_as_rgb else 'F'}\n"
        "COUNT 1 1 1 1\n"
        f"WIDTH {n}\n"
        "HEIGHT 1\n"
        "VIEWPOINT 0 0 0 1 0 0 0\n"
        f"POINTS {n}\n"
        f"DATA {data}\n"
    ).encode("ascii")
    if data == "ascii":
        body = "".join(
            " ".join(repr(v) for v in row) + "\n" for row in values.tolist()
        ).encode("ascii")
    elif data == "binary":
        body = values.tobytes()
    else:
        plain = b"".join(values[name].tobytes() for name in values.dtype.names)  # (SoA)
        packed = lzf_compress(plain)
        body = np.array([len(packed), len(plain)], dtype="<u4").tobytes() + packed
    _atomic_write(Path(path), header + body)


def _atomic_write(path: Path, payload: bytes) -> None:
    atomic_write_bytes(path, payload)
