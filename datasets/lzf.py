"""LZF (liblzf's format, the one PCL's ``binary_compressed`` PCDs use) in pure Python:
``lzf_decompress`` and ``lzf_compress``; no compiled package is needed (``v2x.datasets.pcd``).
"""

from __future__ import annotations

_MAX_LITERAL = 32  # LZF literal runs hold 1..32 bytes
_MAX_OFFSET = 1 << 13  # back-references reach 8192 bytes back
_MAX_MATCH = 264  # (1 << 8) + (1 << 3): longest back-reference


def lzf_decompress(data: bytes, expected_size: int, where: str = "<lzf>") -> bytes:
    """Decompress an LZF stream (liblzf format) into exactly ``expected_size`` bytes.

    Raises ``ValueError`` naming ``where`` if the stream is truncated or corrupt.
    """
    src = memoryview(data)
    n = len(src)
    out = bytearray()
    ip = 0
    while ip < n:
        ctrl = src[ip]
        ip += 1
        if ctrl < 32:  # literal run of ctrl + 1 bytes
            run = ctrl + 1
            if ip + run > n:
                raise ValueError(f"{where}: field 'DATA' LZF literal run goes past the end")
            out += src[ip : ip + run]
            ip += run
            continue
        length = ctrl >> 5
        if length == 7:
            if ip >= n:
                raise ValueError(f"{where}: field 'DATA' LZF stream truncated in a length byte")
            length += src[ip]
            ip += 1
        if ip >= n:
            raise ValueError(f"{where}: field 'DATA' LZF stream truncated in an offset byte")
        ref = len(out) - ((ctrl & 0x1F) << 8) - src[ip] - 1
        ip += 1
        length += 2
        if ref < 0:
            raise ValueError(f"{where}: field 'DATA' LZF back-reference before the start")
        if ref + length <= len(out):
            out += out[ref : ref + length]
        else:  # overlapping copy: repeat the pattern byte by byte
            for k in range(length):
                out.append(out[ref + k])
    if len(out) != expected_size:
        raise ValueError(
            f"{where}: field 'DATA' decompressed to {len(out)} bytes, header says {expected_size}"
        )
    return bytes(out)


def lzf_compress(data: bytes) -> bytes:
    """Compress ``data`` into an LZF stream that ``lzf_decompress`` (and liblzf/PCL) reads.

    Greedy matching through a hash of 3-byte prefixes, as liblzf does; pure Python, so slow for
    large clouds (about 0.5 MB/s on a 2-core CPU) — meant for writers and fixtures.
    """
    src = bytes(data)
    n = len(src)
    out = bytearray()
    table: dict[bytes, int] = {}
    lit_start = 0
    ip = 0

    def flush_literals(start: int, stop: int) -> None:
        while start < stop:
            run = min(_MAX_LITERAL, stop - start)
            out.append(run - 1)
            out.extend(src[start : start + run])
            start += run

    while ip + 2 < n:
        key = src[ip : ip + 3]
        ref = table.get(key)
        table[key] = ip
        if ref is not None and ip - ref - 1 < _MAX_OFFSET:
            limit = min(_MAX_MATCH, n - ip)
            length = 3
            while length < limit and src[ref + length] == src[ip + length]:
                length += 1
            flush_literals(lit_start, ip)
            off = ip - ref - 1
            code = length - 2
            if code < 7:
                out.append((code << 5) | (off >> 8))
            else:
                out.append((7 << 5) | (off >> 8))
                out.append(code - 7)
            out.append(off & 0xFF)
            for k in range(ip + 1, min(ip + length, n - 2)):
                table[src[k : k + 3]] = k
            ip += length
            lit_start = ip
        else:
            ip += 1
    flush_literals(lit_start, n)
    return bytes(out)
