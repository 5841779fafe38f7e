# The forge agent's HTTP server: GET/HEAD of regular files under the token folder only — no listing, no fifo, device
# or socket, nothing a symlink leads to outside it, no request log (the token is in every path). argv: root, port,
# bind address. With FORGE_AGENT_TLS_CERT_B64 and FORGE_AGENT_TLS_KEY_B64 it speaks TLS only, with that certificate.
#
# Shipped as `python3 -c` inside agent.sh by activities/backends/remote/remote-agent-script.ts: the lines from the
# first one that is not a comment on are part of every remote deployment's command, so of every Akash manifest,
# whose version a replica rebuilding it must match (docs/architecture.md §5). Changing them changes that version.
import base64, http.server, os, ssl, stat, sys, tempfile
root = os.path.realpath(sys.argv[1])
top = os.path.join(root, os.environ["FORGE_AGENT_TOKEN"]) + os.sep
class H(http.server.SimpleHTTPRequestHandler):
    def send_head(self):
        p = os.path.realpath(self.translate_path(self.path))
        fd = -1
        try:
            if not p.startswith(top):
                raise OSError("outside the token folder")
            fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0))
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise OSError("not a regular file")
        except OSError:
            if fd >= 0:
                os.close(fd)
            self.send_error(404)
            return None
        f = os.fdopen(fd, "rb")
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(st.st_size))
        self.end_headers()
        return f
    def list_directory(self, path):
        self.send_error(404)
        return None
    def log_message(self, *args):
        pass
httpd = http.server.ThreadingHTTPServer((sys.argv[3], int(sys.argv[2])), lambda *a, **k: H(*a, directory=root, **k))
if os.environ.get("FORGE_AGENT_TLS_CERT_B64"):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with tempfile.TemporaryDirectory() as t:
        for n in ("CERT", "KEY"):
            with open(os.open(os.path.join(t, n), os.O_WRONLY | os.O_CREAT, 0o600), "wb") as f:
                f.write(base64.b64decode(os.environ["FORGE_AGENT_TLS_" + n + "_B64"]))
        ctx.load_cert_chain(os.path.join(t, "CERT"), os.path.join(t, "KEY"))
    httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True, do_handshake_on_connect=False)
httpd.serve_forever()
