"""A Python workload that allocates as web services do: JSON documents
decoded, reshaped and encoded again, strings joined and split. Runs the
given number of rounds and prints its rounds per second."""
import json
import sys
import time

rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
doc = {"user": {"id": 7, "name": "ada", "tags": ["a", "b", "c"]}, "items": list(range(50))}
text = json.dumps(doc)
start = time.perf_counter()
total = 0
for i in range(rounds):
    d = json.loads(text)
    d["items"] = [x * 2 for x in d["items"]]
    d["note"] = "-".join(str(x) for x in d["items"][:20])
    out = json.dumps(d)
    total += len(out.split("-"))
elapsed = time.perf_counter() - start
print(f"{rounds / elapsed:.0f} rounds/s checksum {total}")
