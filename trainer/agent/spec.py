# The forge agent: writes the signed spec (FORGE_SPEC_B64) to the file the trainer reads. argv: the path.
#
# Shipped as `python3 -c` inside agent.sh by activities/backends/remote/remote-agent-script.ts: the lines from the
# first one that is not a comment on are part of every remote deployment's command, so of every Akash manifest,
# whose version a replica rebuilding it must match (docs/architecture.md §5). Changing them changes that version.
import base64, os, sys
with open(sys.argv[1], "wb") as f:
    f.write(base64.b64decode(os.environ["FORGE_SPEC_B64"]))
