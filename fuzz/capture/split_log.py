"""Splits the broker's stored data into fuzz seeds:
- every record batch of every partition log -> BATCH_OUT/<topic>-<codec>-<sha1 prefix>
- every record of __consumer_offsets -> OFFSETS_OUT/<sha1 prefix>, in the
  consumer_offsets_record target's input format ([flags][key_len u16][value_len u16][key][value]).

Usage: split_log.py LOG_DIR BATCH_OUT OFFSETS_OUT
"""
import glob
import hashlib
import os
import struct
import sys

CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]
PER_TOPIC_CODEC = 4


def varint(buf, pos):
    shift = value = 0
    while True:
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if b < 0x80:
            return (value >> 1) ^ -(value & 1), pos


def records(batch):
    """(key, value) of each record of an uncompressed v2 batch."""
    count = struct.unpack(">i", batch[57:61])[0]
    pos = 61
    for _ in range(count):
        _size, pos = varint(batch, pos)
        pos += 1  # attributes
        _, pos = varint(batch, pos)  # timestamp delta
        _, pos = varint(batch, pos)  # offset delta
        key_len, pos = varint(batch, pos)
        key = None if key_len < 0 else batch[pos : pos + key_len]
        pos += max(key_len, 0)
        value_len, pos = varint(batch, pos)
        value = None if value_len < 0 else batch[pos : pos + value_len]
        pos += max(value_len, 0)
        headers, pos = varint(batch, pos)
        for _ in range(headers):
            n, pos = varint(batch, pos)
            pos += n
            n, pos = varint(batch, pos)
            pos += max(n, 0)
        yield key, value


def write_once(out_dir, prefix, data):
    path = os.path.join(out_dir, prefix + hashlib.sha1(data).hexdigest()[:12])
    with open(path, "wb") as f:
        f.write(data)


def main():
    log_dir, batch_out, offsets_out = sys.argv[1:4]
    os.makedirs(batch_out, exist_ok=True)
    os.makedirs(offsets_out, exist_ok=True)
    per_topic_codec = {}
    for segment in sorted(glob.glob(os.path.join(log_dir, "*", "*.log"))):
        topic = os.path.basename(os.path.dirname(segment)).rsplit("-", 1)[0]
        data = open(segment, "rb").read()
        pos = 0
        while pos + 61 <= len(data):
            length = struct.unpack(">i", data[pos + 8 : pos + 12])[0]
            if length < 49 or pos + 12 + length > len(data):
                break  # preallocated or torn tail
            batch = data[pos : pos + 12 + length]
            pos += 12 + length
            codec = CODECS[struct.unpack(">h", batch[21:23])[0] & 7]
            if topic == "__consumer_offsets":
                if codec == "none":
                    for key, value in records(batch):
                        if key is None:
                            continue
                        flags = 1 if value is None else 0
                        value = value or b""
                        entry = struct.pack(">BHH", flags, len(key), len(value)) + key + value
                        write_once(offsets_out, "", entry)
                continue
            n = per_topic_codec.get((topic, codec), 0)
            if n >= PER_TOPIC_CODEC:
                continue
            per_topic_codec[(topic, codec)] = n + 1
            write_once(batch_out, f"{topic}-{codec}-", batch)


main()
