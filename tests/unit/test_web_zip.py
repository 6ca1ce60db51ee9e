"""The browser's .zip of a received tree (web/src/app/zip.js) past 4 GiB: ZIP64.

web/tools/zip-probe.mjs streams files of zeros through the page's zip writer
and prints every byte of the archive but the data; the archive is rebuilt
here as a sparse file and read with Python's zipfile: a file of 4 GiB + 1
(its size needs the ZIP64 extra field) and a small one after it (its offset
needs ZIP64 too). The node side computes the CRC-32 of 4 GiB, so this is slow.

Locally these skip without node; with CI=true they must run (ferry_testing/node.py).
"""

from __future__ import annotations

import json
import subprocess
import zipfile
import zlib
from pathlib import Path

import pytest

from ferry_testing.node import WEB, require_node

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]
GiB = 1 << 30


def _crc_of_zeros(n: int) -> int:
    crc, block = 0, bytes(1 << 20)
    while n:
        take = min(n, len(block))
        crc = zlib.crc32(block[:take], crc)
        n -= take
    return crc


def test_a_tree_past_4_gib_is_a_zip64_archive_zipfile_reads(tmp_path: Path) -> None:
    node = require_node()
    sizes = [4 * GiB + 1, 6]
    result = subprocess.run(
        [node, "tools/zip-probe.mjs", *map(str, sizes)],
        cwd=WEB, capture_output=True, text=True, timeout=850,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    probe = json.loads(result.stdout)
    length = int(probe["length"])
    assert length == int(probe["predicted"]), "the Content-Length announced is exact"
    archive = tmp_path / "t.zip"
    with open(archive, "wb") as f:
        f.truncate(length)  # sparse: the data is zeros
        for offset, data in probe["pieces"]:
            f.seek(int(offset))
            f.write(bytes.fromhex(data))
    with zipfile.ZipFile(archive) as z:
        infos = z.infolist()
        assert [(i.filename, i.file_size) for i in infos] == [
            ("t/", 0),
            ("t/f0.bin", 4 * GiB + 1),
            ("t/f1.bin", 6),
        ]
        big, small = infos[1], infos[2]
        zeros_crc = _crc_of_zeros(4 * GiB + 1)
        assert zeros_crc == big.CRC
        assert big.header_offset < 4 * GiB < small.header_offset
        assert z.read("t/f1.bin") == bytes(6)  # found through its ZIP64 offset, CRC checked
        with z.open(big) as member:
            assert member.read(1 << 16) == bytes(1 << 16)
    with open(archive, "rb") as f:
        f.seek(length - 98)
        end = f.read()
    assert b"PK\x06\x06" in end and b"PK\x06\x07" in end, "ZIP64 end records"
