/**
 * The forge agent's container side, as data: the POSIX sh script that wraps the trainer in a remote container, the
 * env it needs (the trainer contract of docs/architecture.md §6 plus the agent's own), and the path token. Pure: the SDL
 * generator and cf-sdl use it without any I/O. See remote-agent.ts for what the agent serves and how it is read.
 */
import { createHmac } from 'node:crypto';
import { shippedSpecText, type ShippedSpec } from '../../../jobspec/signed-spec';
import type { AgentTls } from './agent-tls';
import { trainerContractEnv } from '../trainer-contract';
import type { EvalRunInputs } from '../types';

const MAX_STDERR_LINES = 20;

// The Python snippets are single-quoted in sh: they must not contain a single quote.
const TEE_PY = `import json, os, sys
p = sys.argv[1]
for line in sys.stdin:
    sys.stdout.write(line)
    sys.stdout.flush()
    if line.startswith("{") and "progress" in line:
        try:
            e = json.loads(line)
        except ValueError:
            continue
        if isinstance(e, dict) and e.get("event") == "progress":
            with open(p + ".tmp", "w") as f:
                f.write(line)
            os.replace(p + ".tmp", p)`;

const DONE_PY = `import datetime, hashlib, json, os, sys
d, code = sys.argv[1], int(sys.argv[2])
out = os.path.join(d, "output")
files = []
for root, _, names in os.walk(out):
    for n in names:
        f = os.path.join(root, n)
        if os.path.islink(f) or not os.path.isfile(f):
            continue
        h = hashlib.sha256()
        with open(f, "rb") as fh:
            for b in iter(lambda: fh.read(1 << 20), b""):
                h.update(b)
        files.append({"path": os.path.relpath(f, out), "size": os.path.getsize(f), "sha256": h.hexdigest()})
try:
    with open(os.path.join(d, "stderr.log"), errors="replace") as fh:
        tail = fh.read().splitlines()[-${MAX_STDERR_LINES}:]
except OSError:
    tail = []
doc = {"exit_code": code, "finished_at": datetime.datetime.now(datetime.timezone.utc).isoformat(), "files": sorted(files, key=lambda x: x["path"]), "stderr_tail": tail}
with open(os.path.join(d, "done.json.tmp"), "w") as fh:
    json.dump(doc, fh)
os.replace(os.path.join(d, "done.json.tmp"), os.path.join(d, "done.json"))`;

/**
 * The agent's HTTP server: GET/HEAD of regular files under the token folder only. No directory listings, no fifo,
 * device or socket (opened non-blocking, checked with fstat before a byte is sent), nothing a symlink leads to
 * outside the token folder, no request log (the token is in every path). argv: root, port, bind address. With
 * FORGE_AGENT_TLS_CERT_B64 and FORGE_AGENT_TLS_KEY_B64 (agent-tls.ts) it speaks TLS only, with that certificate.
 */
const SERVE_PY = `import base64, http.server, os, ssl, stat, sys, tempfile
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
httpd.serve_forever()`;

const SPEC_PY = `import base64, os, sys
with open(sys.argv[1], "wb") as f:
    f.write(base64.b64decode(os.environ["FORGE_SPEC_B64"]))`;

/** POSIX sh; "$@" is the trainer command. Exit code 70 when the agent itself cannot start. */
export const AGENT_SCRIPT = `set -u
R="\${FORGE_AGENT_DIR:-/tmp/forge-agent}"
D="$R/$FORGE_AGENT_TOKEN"
mkdir -p "$D/output" && : >"$R/index.html" && : >"$D/index.html" || exit 70
export FORGE_SPEC="$D/spec.json" FORGE_OUTPUT_DIR="$D/output"
python3 -c '${SPEC_PY}' "$FORGE_SPEC" || exit 70
unset FORGE_SPEC_B64
python3 -c '${SERVE_PY}' "$R" "$FORGE_AGENT_PORT" "\${FORGE_AGENT_BIND:-0.0.0.0}" >/dev/null 2>&1 &
srv=$!
unset FORGE_AGENT_TOKEN FORGE_AGENT_TLS_CERT_B64 FORGE_AGENT_TLS_KEY_B64
date -u +%Y-%m-%dT%H:%M:%SZ >"$D/started"
rm -f "$R/out.fifo" "$R/err.fifo" && mkfifo "$R/out.fifo" "$R/err.fifo" || exit 70
python3 -u -c '${TEE_PY}' "$D/progress.json" <"$R/out.fifo" &
o=$!
tee "$D/stderr.log" <"$R/err.fifo" >&2 &
e=$!
"$@" >"$R/out.fifo" 2>"$R/err.fifo"
code=$?
wait "$o" "$e"
echo "{\\"event\\":\\"forge-agent\\",\\"exit_code\\":$code}"
python3 -c '${DONE_PY}' "$D" "$code"
trap 'kill "$srv" 2>/dev/null; exit 0' TERM INT
while kill -0 "$srv" 2>/dev/null; do sleep 5; done
while :; do sleep 3600; done
`;

/** The container command that runs `trainer` under the agent. */
export function agentCommand(trainer: readonly string[]): { command: string[]; args: string[] } {
  return { command: ['sh', '-c'], args: [AGENT_SCRIPT, 'forge-agent', ...trainer] };
}

/** The path token: unguessable without the backend's credential, the same on every worker. */
export function agentToken(credential: string, backend: string, jobId: string, attempt: number): string {
  return createHmac('sha256', credential).update(`forge-agent\n${backend}\n${jobId}\n${attempt}`).digest('hex').slice(0, 40);
}

/**
 * The trainer contract's env (docs/architecture.md §6) inside the container, plus what the agent needs. FORGE_SPEC and
 * FORGE_OUTPUT_DIR are set by the agent itself (under its token folder).
 */
export function agentEnv(o: {
  signed: ShippedSpec;
  attempt: number;
  token: string;
  port: number;
  operatorEnv: Record<string, string>;
  /** TLS to the agent (agent-tls.ts): its certificate and key. */
  tls?: AgentTls;
  /** An eval attempt's inputs (trainer-contract.ts). */
  evalRun?: EvalRunInputs;
}): Record<string, string> {
  const { spec } = o.signed;
  return {
    ...o.operatorEnv,
    ...trainerContractEnv(spec, o.attempt, o.evalRun),
    FORGE_AGENT_TOKEN: o.token,
    FORGE_AGENT_PORT: String(o.port),
    FORGE_SPEC_B64: Buffer.from(shippedSpecText(o.signed)).toString('base64'),
    ...(o.tls && { FORGE_AGENT_TLS_CERT_B64: Buffer.from(o.tls.cert).toString('base64'), FORGE_AGENT_TLS_KEY_B64: Buffer.from(o.tls.key).toString('base64') }),
  };
}


/** Single-quotes a word for sh. */
export function shellQuote(word: string): string {
  return `'${word.replace(/'/g, `'\\''`)}'`;
}

/**
 * One shell line that runs `trainer` under the agent, for platforms whose container command is fixed by a template
 * (Prime Intellect): the template's start command is `sh -c 'eval "$FORGE_AGENT_BOOT"'` and this goes in the env.
 */
export function agentBootLine(trainer: readonly string[]): string {
  return ['sh', '-c', AGENT_SCRIPT, 'forge-agent', ...trainer].map(shellQuote).join(' ');
}

/** The template start command that pairs with agentBootLine. */
export const AGENT_BOOT_COMMAND = `sh -c 'eval "$FORGE_AGENT_BOOT"'`;
