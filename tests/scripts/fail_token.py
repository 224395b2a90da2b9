"""Print a token-looking value on stdout and an error on stderr, then exit with status 3."""

import sys

from _count import count

count()
print("stdout-secret-must-not-leak-7Hq")
sys.stderr.write("\n  error: refresh token expired; run `acme login`  \n\n")
sys.exit(3)
