#!/usr/bin/env python3
"""Test HTTP server for the networking scenarios: serves DIR on 127.0.0.1:PORT (reached by the
guest only through QEMU's guestfwd), with Range support. --drop-first closes the first GET of
each file halfway through, to test resumable retries.
Usage: http_server.py DIR PORT [--drop-first]"""
import http.server
import os
import sys
import urllib.parse

ROOT, PORT, DROP = sys.argv[1], int(sys.argv[2]), "--drop-first" in sys.argv
dropped = set()


class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        # Percent-decoded (apt asks for "+" and ":" in .deb names as %2b and %3a); no "..".
        rel = urllib.parse.unquote(self.path.split("?", 1)[0]).lstrip("/")
        path = os.path.normpath(os.path.join(ROOT, rel))
        if not path.startswith(os.path.normpath(ROOT) + os.sep) or not os.path.isfile(path):
            self.send_error(404)
            return
        data = open(path, "rb").read()
        start = 0
        rng = self.headers.get("Range")
        if rng and rng.startswith("bytes="):
            start = int(rng[6:].split("-")[0])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        if DROP and self.path not in dropped:
            dropped.add(self.path)
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.log_message("dropped the connection after %d of %d bytes", len(body) // 2, len(body))
            self.close_connection = True
            return
        self.wfile.write(body)


http.server.ThreadingHTTPServer(("127.0.0.1", PORT), H).serve_forever()
