"""Print a raw token (``PREFIX-<invocation number>``)."""

import sys

from _count import count

n = count()
prefix = sys.argv[2] if len(sys.argv) > 2 else "raw-token"
print(f"{prefix}-{n}")
