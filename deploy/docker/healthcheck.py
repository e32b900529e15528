"""Container health check: exit 0 when the router answers GET /ready with 200.

Used by the images' HEALTHCHECK (Docker, podman); Kubernetes probes /ready itself.
Reads ROUTER_PORT so a changed port keeps the check right; stdlib only.
"""

import os
import sys
import urllib.request


def main() -> int:
    port = os.environ.get("ROUTER_PORT", "8000")
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=4) as resp:
            return 0 if resp.status == 200 else 1
    except Exception as exc:  # any failure means unhealthy; say why in `inspect`
        print(f"not ready: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
