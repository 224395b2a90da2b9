"""Sleep for argv[2] seconds (past any sane timeout), then print a token."""

import sys
import time

from _count import count

count()
sys.stderr.write("waiting for the SSO helper...\n")
sys.stderr.flush()
time.sleep(float(sys.argv[2]))
print("too-late-token")
