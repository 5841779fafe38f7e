# The forge agent: after the trainer, done.json — exit code, end time, every output file with size and sha256, and
# the last 20 lines of stderr. argv: the token folder, the exit code.
#
# Shipped as `python3 -c` inside agent.sh by activities/backends/remote/remote-agent-script.ts: the lines from the
# first one that is not a comment on are part of every remote deployment's command, so of every Akash manifest,
# whose version a replica rebuilding it must match (docs/architecture.md §5). Changing them changes that version.
import datetime, hashlib, json, os, sys
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
        tail = fh.read().splitlines()[-20:]
except OSError:
    tail = []
doc = {"exit_code": code, "finished_at": datetime.datetime.now(datetime.timezone.utc).isoformat(), "files": sorted(files, key=lambda x: x["path"]), "stderr_tail": tail}
with open(os.path.join(d, "done.json.tmp"), "w") as fh:
    json.dump(doc, fh)
os.replace(os.path.join(d, "done.json.tmp"), os.path.join(d, "done.json"))
