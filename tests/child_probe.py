"""A child for the launcher's tests: does what its spec says (steps, then crash, hang or fail).

python -m tests.child_probe SPEC.json
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any

from harness.load.child import Child, child_main


def body(child: Child) -> dict[str, Any]:
    spec = child.spec
    child.log(3, "probe: started\n")
    if spec.get("crash_at_start"):
        os.kill(os.getpid(), signal.SIGSEGV)
    for step in spec.get("steps", []):
        child.start(step)
        if step == spec.get("crash_in"):
            os.kill(os.getpid(), signal.SIGSEGV)
        if step == spec.get("hang_in"):
            time.sleep(60)
        if step == spec.get("raise_in"):
            raise RuntimeError(f"probe gave up in {step}")
        child.done(step, ok=True)
    return {"steps": spec.get("steps", []), "env": os.environ.get("PROBE_ENV")}


if __name__ == "__main__":
    child_main(body)
