"""Print a JSON token response; argv[2] is ``expires_in`` seconds or ``at:<epoch>`` for ``expires_at``."""

import json
import sys

from _count import count

n = count()
body = {"access_token": f"json-token-{n}", "token_type": "Bearer"}
spec = sys.argv[2]
if spec.startswith("at:"):
    body["expires_at"] = float(spec[3:])
else:
    body["expires_in"] = float(spec)
sys.stderr.write("minting a token (this goes to stderr)\n")
print(json.dumps(body))
