"""The demo's mail server: a real SMTP server (aiosmtpd) on 127.0.0.1 that keeps every message it receives in a
Maildir, where the demo's mail viewer (`/mail/` on the console host, agencybilling/mailviewer.py) reads them.

    python scripts/mailsink.py --port 8025 --maildir .local/mail

Started and stopped by scripts/demo.py; it accepts mail for any address and relays nothing.
"""

from __future__ import annotations

import argparse
import mailbox
import signal
import sys
import threading
from pathlib import Path

from aiosmtpd.controller import Controller


class MaildirHandler:
    def __init__(self, maildir: Path) -> None:
        for part in ("tmp", "new", "cur"):  # Maildir(create=True) makes them only when the directory is new
            (maildir / part).mkdir(parents=True, exist_ok=True)
        self.box = mailbox.Maildir(str(maildir), create=True)
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's hook name
        with self.lock:
            self.box.add(mailbox.MaildirMessage(envelope.original_content or envelope.content))
        return "250 Message accepted for delivery"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--maildir", type=Path, required=True)
    args = parser.parse_args(argv)
    controller = Controller(MaildirHandler(args.maildir), hostname="127.0.0.1", port=args.port)
    controller.start()
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    print(f"[mail] SMTP server on 127.0.0.1:{args.port}, messages kept in {args.maildir}", flush=True)
    stop.wait()
    controller.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
