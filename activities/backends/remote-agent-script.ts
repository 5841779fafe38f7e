/**
 * The forge agent's container side, as data: the POSIX sh script that wraps the trainer in a remote container, the
 * env it needs (the trainer contract of DESIGN.md §6 plus the agent's own), and the path token. Pure: the SDL
 * generator and cf-sdl use it without any I/O. See remote-agent.ts for what the agent serves and how it is read.
 */
import { createHmac } from 'node:crypto';
import type { TrainingJobSpec } from '../../spec/schema';
import { trainerContractEnv } from './trainer-contract';

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
python3 -m http.server "$FORGE_AGENT_PORT" --bind "\${FORGE_AGENT_BIND:-0.0.0.0}" --directory "$R" >/dev/null 2>&1 &
srv=$!
date -u +%Y-%m-%dT%H:%M:%SZ >"$D/started"
rm -f "$R/out.fifo" "$R/err.fifo" && mkfifo "$R/out.fifo" "$R/err.fifo" || exit 70
python3 -u -c '${TEE_PY}' "$D/progress.json" <"$R/out.fifo" &
o=$!
tee "$D/stderr.log" <"$R/err.fifo" >&2 &
e=$!
"$@" >"$R/out.fifo" 2>"$R/err.fifo"
code=$?
wait "$o" "$e"
python3 -c '${DONE_PY}' "$D" "$code"
echo "{\\"event\\":\\"forge-agent\\",\\"exit_code\\":$code}"
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

/** The spec as submitted; a string is kept byte for byte. */
export function specBytes(spec: TrainingJobSpec, rawSpec: unknown): Buffer {
  if (typeof rawSpec === 'string') return Buffer.from(rawSpec);
  return Buffer.from(`${JSON.stringify(rawSpec ?? spec, null, 2)}\n`);
}

/**
 * The trainer contract's env (DESIGN.md §6) inside the container, plus what the agent needs. FORGE_SPEC and
 * FORGE_OUTPUT_DIR are set by the agent itself (under its token folder).
 */
export function agentEnv(o: {
  spec: TrainingJobSpec;
  rawSpec: unknown;
  attempt: number;
  token: string;
  port: number;
  operatorEnv: Record<string, string>;
}): Record<string, string> {
  const { spec } = o;
  return {
    ...o.operatorEnv,
    ...trainerContractEnv(spec, o.attempt),
    FORGE_AGENT_TOKEN: o.token,
    FORGE_AGENT_PORT: String(o.port),
    FORGE_SPEC_B64: specBytes(spec, o.rawSpec).toString('base64'),
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
