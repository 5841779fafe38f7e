"""P2PFL's own web logger (WebP2PFLogger, P2pflWebServices), made safe for a training job."""

from __future__ import annotations

import sys
import time
from typing import Any


def prepare_web_logger() -> dict[str, int]:
    """Two fixes to P2PFL 0.4.4's web logger, which is otherwise used as shipped.

    1. WebP2PFLogger.log_metric reads self._nodes, which only the innermost P2PFLogger has: once connected, every
       metric raises AttributeError in the learner and the experiment stops. The decorators' get_nodes() reaches it.
    2. Its web-services client raises when a POST fails (inside Node.start() or the learner): an API restart would
       fail the job. Telemetry must not: failures are counted and reported, a node's registration is retried (without
       its node_id P2PFL skips everything that node sends).
    Communication logs are not sent: P2PFL 0.4.4's client does not implement them.
    """
    from p2pfl.management.logger.decorators.web_logger import WebP2PFLogger
    from p2pfl.management.p2pfl_web_services import P2pflWebServices

    if not hasattr(WebP2PFLogger, "_nodes"):
        WebP2PFLogger._nodes = property(lambda self: self.get_nodes())  # type: ignore[attr-defined]

    counts = {"ok": 0, "failed": 0}

    def guarded(name: str, tries: int) -> None:
        original = getattr(P2pflWebServices, name)

        def call(self: Any, *args: Any, **kwargs: Any) -> None:
            for attempt in range(tries):
                try:
                    original(self, *args, **kwargs)
                    counts["ok"] += 1
                    return
                except Exception as err:  # whatever requests or P2PFL raise
                    if attempt + 1 < tries:
                        time.sleep(0.5 * (attempt + 1))
                        continue
                    counts["failed"] += 1
                    if counts["failed"] <= 3:
                        print(f"p2pfl experiment: web logger {name} failed: {err}", file=sys.stderr, flush=True)

        setattr(P2pflWebServices, name, call)

    # It has no endpoint yet and raises NotImplementedError, which the logger turns into a warning per message.
    P2pflWebServices.send_communication_log = lambda self, *args, **kwargs: None  # type: ignore[method-assign]
    guarded("register_node", 4)
    for name in ("send_log", "send_local_metric", "send_global_metric", "send_system_metric"):
        guarded(name, 1)
    return counts
