"""PCD reader/writer: hand-written files in the published encodings, open3d as a cross-check."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from v2x.datasets.pcd import (
    PCD_DATA_KINDS,
    import_open3d,
    lzf_compress,
    lzf_decompress,
    read_pcd,
    read_pcd_xyzi,
    write_pcd,
)

HEADER = (
    "# .PCD v0.7 - Point Cloud Data file format\n"
    "VERSION 0.7\n"
    "FIELDS {fields}\n"
    "SIZE {size}\n"
    "TYPE {type}\n"
    "COUNT {count}\n"
    "WIDTH {n}\n"
    "HEIGHT 1\n"
    "VIEWPOINT 0 0 0 1 0 0 0\n"
    "POINTS {n}\n"
    "DATA {data}\n"
)
XYZI = [(1.5, -2.0, 0.25, 17.0), (-3.0, 4.0, 1.0, 255.0), (0.0, 0.0, -1.75, 0.0)]


def _header(
    n: int, data: str, fields="x y z intensity", size="4 4 4 4", type_="F F F F", count="1 1 1 1"
):
    return HEADER.format(fields=fields, size=size, type=type_, count=count, n=n, data=data).encode()


def _literal_lzf(data: bytes) -> bytes:
    """An LZF stream of literal runs only (control byte = run length − 1, at most 32 bytes)."""
    out = bytearray()
    for start in range(0, len(data), 32):
        chunk = data[start : start + 32]
        out.append(len(chunk) - 1)
        out += chunk
    return bytes(out)


@pytest.fixture(scope="module")
def o3d():
    try:
        return import_open3d()
    except ImportError as exc:  # pragma: no cover - open3d is a project dependency
        pytest.skip(f"open3d unavailable: {exc}")


def test_hand_written_binary_with_extra_fields(tmp_path):
    # x y z as F4, intensity as U1 (0-255), a U2 ring field and a 2-element F4 field: packed AoS.
    path = tmp_path / "hand_binary.pcd"
    rows = [(*p[:3], int(p[3]), 7, 0.5, -0.5) for p in XYZI]
    body = b"".join(struct.pack("<3fBH2f", *row) for row in rows)
    path.write_bytes(
        _header(
            3, "binary", "x y z intensity ring extra", "4 4 4 1 2 4", "F F F U U F", "1 1 1 1 1 2"
        )
        + body
    )
    cloud = read_pcd(path)
    assert cloud.fields["ring"].tolist() == [7, 7, 7]
    assert cloud.fields["extra"].shape == (3, 2)
    points, dropped = read_pcd_xyzi(path, intensity_scale=1 / 255)
    expected = np.array(XYZI, dtype=np.float64)
    expected[:, 3] /= 255
    np.testing.assert_allclose(points, expected, rtol=0, atol=1e-7)
    assert dropped == 0 and points.dtype == np.float32


def test_hand_written_binary_compressed_literal_stream(tmp_path):
    # binary_compressed: sizes, then LZF of the struct-of-arrays bytes (all x, all y, ...).
    soa = b"".join(struct.pack("<3f", *[p[k] for p in XYZI]) for k in range(4))
    packed = _literal_lzf(soa)
    path = tmp_path / "hand_compressed.pcd"
    path.write_bytes(
        _header(3, "binary_compressed") + struct.pack("<II", len(packed), len(soa)) + packed
    )
    points, _ = read_pcd_xyzi(path)
    np.testing.assert_array_equal(points, np.array(XYZI, dtype=np.float32))


def test_header_fields_separated_by_tabs(tmp_path):
    # PCL's reader splits header lines on any of "\t\r " (pcd_io.cpp, boost::is_any_of): a
    # header written with tabs, CRLF line ends and repeated spaces is a valid PCD.
    header = _header(3, "binary").decode().replace("\n", "\r\n")
    header = header.replace("FIELDS ", "FIELDS\t").replace("DATA ", "DATA\t\t")
    header = header.replace("POINTS ", "POINTS  \t").replace("SIZE 4 4 4 4", "SIZE\t4\t4\t4\t4")
    body = b"".join(struct.pack("<4f", *p) for p in XYZI)
    path = tmp_path / "tabs.pcd"
    path.write_bytes(header.encode() + body)
    points, dropped = read_pcd_xyzi(path)
    np.testing.assert_array_equal(points, np.array(XYZI, dtype=np.float32))
    assert dropped == 0


def test_lzf_back_reference_by_hand():
    # "abc" as a literal, then a 9-byte back-reference at offset 3 (overlapping copy):
    # control 0xE0 (length code 7 → one extra byte 0 → 7 + 2 = 9), offset byte 2 (= 3 − 1).
    stream = bytes([2]) + b"abc" + bytes([0xE0, 0x00, 0x02])
    assert lzf_decompress(stream, 12) == b"abcabcabcabc"
    short = bytes([0]) + b"z" + bytes([0x20, 0x00])  # 3-byte copy of the previous byte
    assert lzf_decompress(short, 4) == b"zzzz"
    with pytest.raises(ValueError, match="DATA"):
        lzf_decompress(stream[:-1], 12)


def test_lzf_compress_round_trip_and_compresses():
    rng = np.random.default_rng(1)
    for payload in (
        b"",
        b"x",
        bytes(range(256)) * 40,
        rng.integers(0, 4, 5000, dtype=np.uint8).tobytes(),
    ):
        packed = lzf_compress(payload)
        assert lzf_decompress(packed, len(payload)) == payload
    assert len(lzf_compress(bytes(range(256)) * 40)) < 1000


@pytest.mark.parametrize("kind", PCD_DATA_KINDS)
def test_write_read_round_trip_and_open3d_reads_ours(tmp_path, kind, o3d):
    rng = np.random.default_rng(2)
    points = rng.normal(scale=20, size=(500, 4)).astype(np.float32)
    points[:, 3] = rng.integers(0, 256, 500) / 255.0
    path = tmp_path / f"ours_{kind}.pcd"
    write_pcd(path, points, kind, intensity_scale=255.0)
    back, _ = read_pcd_xyzi(path, intensity_scale=1 / 255)
    np.testing.assert_array_equal(back[:, :3], points[:, :3])
    np.testing.assert_allclose(back[:, 3], points[:, 3], atol=1e-6)
    cloud = o3d.t.io.read_point_cloud(str(path))
    np.testing.assert_array_equal(cloud.point.positions.numpy(), points[:, :3])
    np.testing.assert_allclose(
        cloud.point["intensity"].numpy()[:, 0] / 255, points[:, 3], atol=1e-6
    )


@pytest.mark.parametrize("compressed", [False, True])
def test_we_read_what_open3d_writes(tmp_path, compressed, o3d):
    rng = np.random.default_rng(3)
    xyz = rng.normal(size=(300, 3)).astype(np.float32)
    intensity = rng.uniform(0, 255, size=(300, 1)).astype(np.float32)
    cloud = o3d.t.geometry.PointCloud()
    cloud.point.positions = o3d.core.Tensor(xyz)
    cloud.point.intensity = o3d.core.Tensor(intensity)
    path = tmp_path / f"o3d_{compressed}.pcd"
    assert o3d.t.io.write_point_cloud(str(path), cloud, write_ascii=False, compressed=compressed)
    assert read_pcd(path).header["DATA"] == ("binary_compressed" if compressed else "binary")
    points, _ = read_pcd_xyzi(path)
    np.testing.assert_array_equal(points[:, :3], xyz)
    np.testing.assert_array_equal(points[:, 3], intensity[:, 0])


def test_ascii_nan_rows_are_dropped_and_counted(tmp_path):
    path = tmp_path / "ascii.pcd"
    path.write_bytes(_header(3, "ascii") + b"1 2 3 4\nnan nan nan 0\n-1 -2 -3 5\n")
    points, dropped = read_pcd_xyzi(path)
    assert dropped == 1
    np.testing.assert_array_equal(points, [[1, 2, 3, 4], [-1, -2, -3, 5]])


def test_bad_files_name_file_and_field(tmp_path):
    missing = tmp_path / "nope.pcd"
    with pytest.raises(ValueError, match=r"nope\.pcd: file not found"):
        read_pcd(missing)
    full = _header(3, "binary") + b"".join(struct.pack("<4f", *p) for p in XYZI)
    (tmp_path / "trunc.pcd").write_bytes(full[:-5])
    with pytest.raises(ValueError, match=r"trunc\.pcd: field 'DATA' \(binary\) is truncated"):
        read_pcd(tmp_path / "trunc.pcd")
    soa = b"".join(struct.pack("<3f", *[p[k] for p in XYZI]) for k in range(4))
    packed = _literal_lzf(soa)
    (tmp_path / "ctrunc.pcd").write_bytes(
        _header(3, "binary_compressed") + struct.pack("<II", len(packed), len(soa)) + packed[:-10]
    )
    with pytest.raises(
        ValueError, match=r"ctrunc\.pcd: field 'DATA' \(binary_compressed\) is truncated"
    ):
        read_pcd(tmp_path / "ctrunc.pcd")
    (tmp_path / "nofields.pcd").write_bytes(b"VERSION 0.7\nSIZE 4\nTYPE F\nPOINTS 0\nDATA ascii\n")
    with pytest.raises(ValueError, match=r"nofields\.pcd: field 'FIELDS' missing"):
        read_pcd(tmp_path / "nofields.pcd")
    (tmp_path / "noint.pcd").write_bytes(
        _header(1, "ascii", "x y z", "4 4 4", "F F F", "1 1 1") + b"1 2 3\n"
    )
    with pytest.raises(ValueError, match=r"noint\.pcd: field 'intensity' missing"):
        read_pcd_xyzi(tmp_path / "noint.pcd")
    (tmp_path / "short.pcd").write_bytes(_header(3, "ascii") + b"1 2 3 4\n")
    with pytest.raises(ValueError, match=r"short\.pcd: field 'DATA' \(ascii\) is truncated"):
        read_pcd(tmp_path / "short.pcd")
    with pytest.raises(ValueError, match="field 'data'"):
        write_pcd(tmp_path / "x.pcd", np.zeros((1, 4)), "gzip")


def test_the_pcd_benchmark_runs_and_its_two_ascii_parses_agree():
    """benchmarks/bench_pcd.py times the ascii parse against the line-by-line one it replaced
    and checks both read the same values (it stops with an AssertionError otherwise)."""
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_pcd.py"
    done = subprocess.run([sys.executable, str(script), "--points", "500", "--repeat", "1"],
                          capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "ascii_line_by_line" in done.stdout and "x the line-by-line parse" in done.stdout
