"""A local SMTP server for the benchmarks, in a process of its own (so it never shares the measured process's
GIL): `python -m bench.smtp_sink --port N --out keys.txt` accepts every message on 127.0.0.1:N and appends its
X-Notice-Key (or "-") to the file, one line per message received. Stopped by SIGTERM."""

from __future__ import annotations

import argparse
import signal
import threading


class KeyRecorder:
    def __init__(self, path: str) -> None:
        self.out = open(path, "a", buffering=1)  # noqa: SIM115 - open for the server's life

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's hook name
        content = envelope.content if isinstance(envelope.content, bytes) else envelope.content.encode()
        key = "-"
        head = content.split(b"\r\n\r\n", 1)[0]
        for line in head.split(b"\r\n"):
            if line[:13].lower() == b"x-notice-key:":
                key = line[13:].strip().decode()
                break
        self.out.write(key + "\n")
        return "250 OK"


def main() -> None:
    from aiosmtpd.controller import Controller

    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    controller = Controller(KeyRecorder(args.out), hostname=args.host, port=args.port)
    controller.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    print("ready", flush=True)
    stop.wait()
    controller.stop()


if __name__ == "__main__":
    main()
