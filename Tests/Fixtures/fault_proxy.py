#!/usr/bin/env python3
"""A fault-injecting proxy in front of a real registry, for img-pull's tests.

It forwards the OCI distribution API to --upstream and, as asked, adds what real registries and
networks do to clients: Bearer-token challenges (tokens that expire after a number of uses),
429 and 5xx answers, transfers cut short, corrupted bytes, slow bodies, broken manifests.
Every request is logged, one JSON line each, to --log, so tests can count what was fetched.
Loopback only; it stops when its parent test kills it.
"""
import argparse
import base64
import http.client
import json
import secrets
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

parser = argparse.ArgumentParser()
parser.add_argument("--port", type=int, required=True)
parser.add_argument("--upstream", required=True, help="host:port of the registry")
parser.add_argument("--log", required=True)
parser.add_argument("--bearer", action="store_true", help="require Bearer tokens from /token")
parser.add_argument("--token-user", help="user:password the token endpoint requires (Basic)")
parser.add_argument("--token-uses", type=int, default=0, help="a token expires after this many requests")
parser.add_argument("--fail-blobs", type=int, default=0, help="answer the first N blob GETs with --fail-status")
parser.add_argument("--fail-status", type=int, default=503)
parser.add_argument("--fail-each-blob-once", action="store_true", help="answer the first GET of every blob with --fail-status")
parser.add_argument("--retry-after", default="0", help="the Retry-After header of injected 429 answers")
parser.add_argument("--realm", help="the token realm the Bearer challenge names (default: this proxy's /token)")
parser.add_argument("--realm-host", default="127.0.0.1", help="the host name of the default realm (this proxy under another name)")
parser.add_argument("--redirect-scheme", default="http", help="the scheme of --redirect-blobs' Location (ftp: one curl must not follow)")
parser.add_argument("--token-body", help="what /token answers (200) instead of a token (a proxy's login page)")
parser.add_argument("--basic-too", choices=["one-header", "two-headers"],
                    help="offer a Basic challenge before the Bearer one, in the same header or in one of its own")
parser.add_argument("--fail-all", action="store_true", help="every request gets --fail-status")
parser.add_argument("--truncate-blobs", type=int, default=0, help="cut the first N blob bodies halfway")
parser.add_argument("--truncate-min-size", type=int, default=0, help="only cut bodies at least this long")
parser.add_argument("--ignore-range", action="store_true", help="answer Range requests with the whole blob")
parser.add_argument("--corrupt-blobs", action="store_true", help="flip a byte in every blob body")
parser.add_argument("--slow-blobs", type=float, default=0, help="seconds to stall mid-body")
parser.add_argument("--redirect-blobs", action="store_true",
                    help="answer blob GETs with 307 to another host name (localhost) under /storage/")
parser.add_argument("--storage-status", type=int, default=0,
                    help="the blob storage (/storage/) answers this: 401 with a Bearer challenge of its own, or 403")
parser.add_argument("--manifest-body", help="serve this text as every manifest")
parser.add_argument("--manifest-media-type", help="rewrite the mediaType of manifests")
parser.add_argument("--shrink-layer-sizes", type=int, help="declare every layer this many bytes long in manifests")
args = parser.parse_args()
# The test runner may start us with signals blocked; make SIGTERM work.
signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGINT})

lock = threading.Lock()
state = {"blob_gets": 0, "truncated": 0, "tokens": {}}


def log(entry):
    with lock:
        with open(args.log, "a") as f:
            f.write(json.dumps(entry) + "\n")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def send_plain(self, status, body=b"", headers=()):
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_HEAD(self):
        self.do_GET()

    def do_GET(self):
        path = self.path
        is_blob = "/blobs/sha256:" in path
        log({"method": self.command, "path": path, "range": self.headers.get("Range"), "time": time.time(),
             "authorization": (self.headers.get("Authorization") or "").split(" ")[0]})
        if path.startswith("/token"):
            return self.token()
        if path.startswith("/storage/"):
            # The "blob storage" a registry redirects to: no credentials expected here.
            if args.storage_status == 401:
                challenge = 'Bearer realm="http://localhost:%d/token",service="storage",scope="blob"' % args.port
                return self.send_plain(401, b"", [("WWW-Authenticate", challenge)])
            if args.storage_status:
                return self.send_plain(args.storage_status, b"<Error>AccessDenied: Request has expired</Error>")
            self.path = path[len("/storage"):]
            return self.forward(True)
        if args.fail_all:
            return self.send_plain(args.fail_status, b'{"errors":[{"code":"UNAVAILABLE","message":"injected"}]}')
        if args.bearer and path.startswith("/v2/") and path != "/v2/":
            auth = self.headers.get("Authorization") or ""
            token = auth[7:] if auth.startswith("Bearer ") else None
            with lock:
                uses = state["tokens"].get(token)
                valid = uses is not None and (args.token_uses == 0 or uses < args.token_uses)
                if valid:
                    state["tokens"][token] = uses + 1
            if not valid:
                repo = path[4:].split("/manifests/")[0].split("/blobs/")[0]
                realm = args.realm or "http://%s:%d/token" % (args.realm_host, args.port)
                challenge = 'Bearer realm="%s",service="fault-proxy",scope="repository:%s:pull"' % (realm, repo)
                challenges = [("WWW-Authenticate", challenge)]
                if args.basic_too == "one-header":
                    challenges = [("WWW-Authenticate", 'Basic realm="fault-proxy", ' + challenge)]
                elif args.basic_too == "two-headers":
                    challenges = [("WWW-Authenticate", 'Basic realm="fault-proxy"'), ("WWW-Authenticate", challenge)]
                return self.send_plain(401, b'{"errors":[{"code":"UNAUTHORIZED","message":"token required"}]}',
                                       challenges + [("Content-Type", "application/json")])
        if is_blob and self.command == "GET" and args.redirect_blobs:
            return self.send_plain(307, b"", [("Location", "%s://localhost:%d/storage%s" % (args.redirect_scheme, args.port, path))])
        if is_blob and self.command == "GET":
            with lock:
                state["blob_gets"] += 1
                n = state["blob_gets"]
                first_time = path not in state.setdefault("failed_paths", set())
                if args.fail_each_blob_once and first_time:
                    state["failed_paths"].add(path)
            if n <= args.fail_blobs or (args.fail_each_blob_once and first_time):
                return self.send_plain(args.fail_status, b'{"errors":[{"code":"UNAVAILABLE","message":"injected"}]}',
                                       [("Retry-After", args.retry_after)] if args.fail_status == 429 else [])
        self.forward(is_blob)

    def token(self):
        if args.token_user:
            auth = self.headers.get("Authorization") or ""
            expected = "Basic " + base64.b64encode(args.token_user.encode()).decode()
            if auth != expected:
                return self.send_plain(401, b'{"errors":[{"code":"UNAUTHORIZED","message":"bad credentials"}]}')
        if args.token_body is not None:
            return self.send_plain(200, args.token_body.encode(), [("Content-Type", "text/html")])
        token = secrets.token_hex(16)
        with lock:
            state["tokens"][token] = 0
        body = json.dumps({"token": token, "expires_in": 60}).encode()
        self.send_plain(200, body, [("Content-Type", "application/json")])

    def forward(self, is_blob):
        headers = {k: v for k, v in self.headers.items() if k.lower() in ("accept", "range")}
        if args.ignore_range:
            headers.pop("Range", None)
        upstream = http.client.HTTPConnection(args.upstream, timeout=30)
        upstream.request(self.command, self.path, headers=headers)
        response = upstream.getresponse()
        body = response.read()
        status = response.status
        out_headers = [(k, v) for k, v in response.getheaders()
                       if k.lower() in ("content-type", "docker-content-digest", "content-range", "location")]
        if "/manifests/" in self.path and status == 200:
            if args.manifest_body is not None:
                body = args.manifest_body.encode()
            elif args.shrink_layer_sizes is not None:
                document = json.loads(body)
                for layer in document.get("layers", []):
                    layer["size"] = args.shrink_layer_sizes
                body = json.dumps(document).encode()
                out_headers = [(k, v) for k, v in out_headers if k.lower() != "docker-content-digest"]
            elif args.manifest_media_type:
                document = json.loads(body)
                document["mediaType"] = args.manifest_media_type
                body = json.dumps(document).encode()
                out_headers = [(k, v) for k, v in out_headers if k.lower() != "content-type"]
                out_headers.append(("Content-Type", args.manifest_media_type))
        if is_blob and self.command == "GET" and status in (200, 206) and body:
            if args.corrupt_blobs:
                body = bytearray(body)
                body[len(body) // 2] ^= 0xFF
                body = bytes(body)
            with lock:
                cut = state["truncated"] < args.truncate_blobs and len(body) >= args.truncate_min_size
                if cut:
                    state["truncated"] += 1
            if cut or args.slow_blobs:
                self.send_response(status)
                for k, v in out_headers:
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                half = max(1, len(body) // 2)
                self.wfile.write(body[:half])
                self.wfile.flush()
                if cut:
                    self.close_connection = True
                    return
                time.sleep(args.slow_blobs)
                self.wfile.write(body[half:])
                return
        self.send_plain(status, body if self.command != "HEAD" else b"", out_headers)


server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
server.daemon_threads = True
print("ready", flush=True)
server.serve_forever()
