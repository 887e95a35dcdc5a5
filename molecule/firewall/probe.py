"""Try a TCP connection to each port of one address from the controller; print JSON
{port: "open" | "refused" | "filtered"}. filtered: no answer within the timeout (a
drop), refused: a reset (nothing listens, nothing dropped it)."""

import json
import socket
import sys
from concurrent.futures import ThreadPoolExecutor


def probe(address: str, port: int) -> str:
    try:
        with socket.create_connection((address, port), timeout=1.5):
            return "open"
    except socket.timeout:
        return "filtered"
    except ConnectionRefusedError:
        return "refused"
    except OSError:
        return "filtered"


address, ports = sys.argv[1], [int(p) for p in sys.argv[2:]]
with ThreadPoolExecutor(len(ports)) as pool:
    states = dict(zip(ports, pool.map(lambda p: probe(address, p), ports)))
print(json.dumps({str(p): s for p, s in states.items()}))
