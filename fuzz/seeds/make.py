#!/usr/bin/env python3
"""Writes the fuzz targets' seed inputs into fuzz/seeds/TARGET/: run from anywhere, it reads the
repository's own test data and writes deterministic files (same input, same seeds).

- sse_parser: every case of scores-sse/tests/conformance/sse-cases.jsonl and the sample capture
  scores-cli/tests/replay/sample.sse, each after a chunk-length byte (the target's first field).
- decode: the data lines of the sample capture and the conformance cases, after "score".
- journal_reader: segments as the journal writes them (batches of records, CRC-32C), whole,
  cut short, and with a byte flipped; the target adds the 16-byte segment header itself.
- hostile inputs, as large as `scripts/fuzz.sh` lets inputs grow (1 MiB): deep nesting for
  decode (JSON and JSON5), and for sse_parser an overlong id and a line that never ends.
- every input the fuzzer ever found, as it found it.
- fold: a few fixed byte strings (the target reads them as (student, exam, score, publish)
  steps).
"""
import hashlib
import json
import pathlib
import struct

ROOT = pathlib.Path(__file__).resolve().parents[2]
SEEDS = ROOT / "fuzz" / "seeds"


def crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def record(seq: int, student: str, exam: int, score: float, upstream_id: str) -> bytes:
    student_bytes, id_bytes = student.encode(), upstream_id.encode()
    payload = struct.pack("<QQdH", seq, exam, score, len(student_bytes)) + student_bytes
    payload += struct.pack("<I", len(id_bytes)) + id_bytes
    return struct.pack("<II", len(payload), crc32c(payload)) + payload


def batch(records: bytes) -> bytes:
    header = struct.pack("<III", int.from_bytes(b"SJB1", "little"), len(records), crc32c(records))
    return header + struct.pack("<I", crc32c(header)) + records


def write(target: str, name: str, data: bytes) -> None:
    directory = SEEDS / target
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{name}-{hashlib.sha1(data).hexdigest()[:12]}").write_bytes(data)


def main() -> None:
    sample = (ROOT / "scores-cli/tests/replay/sample.sse").read_bytes()
    cases = [json.loads(line) for line in (ROOT / "scores-sse/tests/conformance/sse-cases.jsonl").open()]
    write("sse_parser", "sample", b"\x07" + sample)
    for index, case in enumerate(cases):
        write("sse_parser", f"case{index:02}", bytes([1 + index % 16]) + case["input"].encode())
    data_lines = [line[5:].strip() for line in sample.decode().splitlines() if line.startswith("data:")]
    for index, data in enumerate(data_lines):
        write("decode", f"sample{index:02}", b"score\x00" + data.encode())

    event = b'{"studentId":"a","exam":1,"score":0.5}'
    write("decode", "deep-arrays", b"score\x00" + b"[" * 50_000)
    write("decode", "deep-objects", b"score\x00" + b'{"a":' * 20_000)
    write("decode", "deep-json5", b"score\x00" + b"{a:" * 20_000)
    write("decode", "deep-field", b"score\x00" + event[:-1] + b',"x":' + b"[" * 200 + b"]" * 200 + b"}")
    write("sse_parser", "long-id", b"\x40id: " + b"7" * 500_000 + b"\ndata: " + event + b"\n\n")
    write("sse_parser", "endless-line", b"\xff" + b"data: " + b"x" * 1_000_000)
    # Inputs the fuzzer found, kept as seeds (each is a unit test too): an id of bytes that are
    # not UTF-8, within the limit as bytes and over it once decoded.
    # ... and a batch header whose checksum holds, claiming 3.4 GB of records.
    write("journal_reader", "found-huge-batch", bytes.fromhex("534a4231003800ce1053534afe2f71bd"))
    write("sse_parser", "found-invalid-utf8-id", bytes.fromhex("0d7265742a793a313030300a646174613a7448737474657374310a0a69643affffffffffffff793a313030300a646174613a7448737474657374310a0a69643affffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff3030300a646174613a7448737474657374310a0a69643affffffffffffff793a313030300a646174613a7448737474ffffffffffffffffffffffffffff746573740a646174613a74657374320a"))

    seq, body = 1, b""
    for batch_index in range(4):
        records = b""
        for i in range(3):
            records += record(seq, f"Student.{i}", 10000 + batch_index, i / 4, str(seq))
            seq += 1
        body += batch(records)
    write("journal_reader", "whole", body)
    write("journal_reader", "cut", body[:-7])
    flipped = bytearray(body)
    flipped[len(body) // 2] ^= 0x01
    write("journal_reader", "flipped", bytes(flipped))
    write("journal_reader", "zeros", body + bytes(64))

    for index, data in enumerate([b"\x01" * 32, bytes(range(64)), b"\xff\x00" * 40]):
        write("fold", f"steps{index}", data)


if __name__ == "__main__":
    main()
