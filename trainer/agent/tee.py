# The forge agent: passes the trainer's stdout through and keeps its last progress event in a file. argv: that file.
#
# Shipped as `python3 -c` inside agent.sh by activities/backends/remote/remote-agent-script.ts: the lines from the
# first one that is not a comment on are part of every remote deployment's command, so of every Akash manifest,
# whose version a replica rebuilding it must match (docs/architecture.md §5). Changing them changes that version.
import json, os, sys
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
            os.replace(p + ".tmp", p)
