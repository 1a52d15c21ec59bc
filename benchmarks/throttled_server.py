"""A static file server throttled per connection, in its own process (as a real asset host is:
the client's threads then compete with each other, not with the server, for the GIL).

    python -m benchmarks.throttled_server DIR BYTES_PER_S     # prints "port N", serves forever
"""

from __future__ import annotations

import sys
import time
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

STEP = 256 * 1024


class Throttled(SimpleHTTPRequestHandler):
    rate = 0  # bytes/s per connection, 0 = as fast as it goes
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        pass

    def copyfile(self, source: Any, outputfile: Any) -> None:
        if not self.rate:
            super().copyfile(source, outputfile)
            return
        t0, sent = time.monotonic(), 0
        while chunk := source.read(min(STEP, max(1024, self.rate // 50))):
            outputfile.write(chunk)
            sent += len(chunk)
            delay = t0 + sent / self.rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)


def main() -> None:
    folder, rate = sys.argv[1], int(sys.argv[2])
    handler = type("Handler", (Throttled,), {"rate": rate})
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(handler, directory=folder))
    server.daemon_threads = True
    print(f"port {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
