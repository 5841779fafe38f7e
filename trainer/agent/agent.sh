# The forge agent (POSIX sh; "$@" is the trainer command; exit code 70 when the agent itself cannot start). Each
# {{name.py}} is that file of this folder, single-quoted: none may contain a single quote.
#
# activities/backends/remote/remote-agent-script.ts ships the lines from the first one that is not a comment on as the
# container command of every remote deployment, so they are in every Akash manifest, whose version a replica
# rebuilding it must match (docs/architecture.md §5). Changing them changes that version.
set -u
R="${FORGE_AGENT_DIR:-/tmp/forge-agent}"
D="$R/$FORGE_AGENT_TOKEN"
mkdir -p "$D/output" && : >"$R/index.html" && : >"$D/index.html" || exit 70
export FORGE_SPEC="$D/spec.json" FORGE_OUTPUT_DIR="$D/output"
python3 -c '{{spec.py}}' "$FORGE_SPEC" || exit 70
unset FORGE_SPEC_B64
python3 -c '{{serve.py}}' "$R" "$FORGE_AGENT_PORT" "${FORGE_AGENT_BIND:-0.0.0.0}" >/dev/null 2>&1 &
srv=$!
unset FORGE_AGENT_TOKEN FORGE_AGENT_TLS_CERT_B64 FORGE_AGENT_TLS_KEY_B64
date -u +%Y-%m-%dT%H:%M:%SZ >"$D/started"
rm -f "$R/out.fifo" "$R/err.fifo" && mkfifo "$R/out.fifo" "$R/err.fifo" || exit 70
python3 -u -c '{{tee.py}}' "$D/progress.json" <"$R/out.fifo" &
o=$!
tee "$D/stderr.log" <"$R/err.fifo" >&2 &
e=$!
"$@" >"$R/out.fifo" 2>"$R/err.fifo"
code=$?
wait "$o" "$e"
echo "{\"event\":\"forge-agent\",\"exit_code\":$code}"
python3 -c '{{done.py}}' "$D" "$code"
trap 'kill "$srv" 2>/dev/null; exit 0' TERM INT
while kill -0 "$srv" 2>/dev/null; do sleep 5; done
while :; do sleep 3600; done
