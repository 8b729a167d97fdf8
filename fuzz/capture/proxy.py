"""A TCP proxy that saves every request frame a client sends to the broker (the bytes after
the 4-byte size prefix) as one corpus file: OUT/<api_key>-v<version>-<sha1 prefix>.
Identical frames are saved once; at most PER_KEY_VERSION files per (key, version) and
none above MAX_FRAME_BYTES, to keep the committed corpus small.

Usage: proxy.py LISTEN_HOST PORT OUT_DIR  (forwards LISTEN_HOST:PORT to 127.0.0.1:PORT)
"""
import asyncio
import hashlib
import os
import sys

MAX_FRAME_BYTES = 64 * 1024
PER_KEY_VERSION = 6

counts = {}


def save(out_dir, frame):
    if len(frame) < 4 or len(frame) > MAX_FRAME_BYTES:
        return
    key = int.from_bytes(frame[0:2], "big", signed=True)
    version = int.from_bytes(frame[2:4], "big", signed=True)
    # The correlation id differs per request: zero it so repeats dedupe.
    frame = frame[:4] + b"\0\0\0\0" + frame[8:]
    name = f"{key}-v{version}-{hashlib.sha1(frame).hexdigest()[:12]}"
    path = os.path.join(out_dir, name)
    if os.path.exists(path) or counts.get((key, version), 0) >= PER_KEY_VERSION:
        return
    counts[(key, version)] = counts.get((key, version), 0) + 1
    with open(path, "wb") as f:
        f.write(frame)


async def pump(reader, writer, out_dir):
    buf = b""
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
            if out_dir is None:
                continue
            buf += data
            while len(buf) >= 4:
                size = int.from_bytes(buf[:4], "big")
                if len(buf) < 4 + size:
                    break
                save(out_dir, buf[4 : 4 + size])
                buf = buf[4 + size :]
    except ConnectionError:
        pass
    finally:
        writer.close()


async def main():
    listen_host, port, out_dir = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    os.makedirs(out_dir, exist_ok=True)

    async def handle(client_reader, client_writer):
        try:
            broker_reader, broker_writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(
            pump(client_reader, broker_writer, out_dir),
            pump(broker_reader, client_writer, None),
        )

    server = await asyncio.start_server(handle, listen_host, port)
    async with server:
        await server.serve_forever()


asyncio.run(main())
