"""Parse a Prometheus text exposition on stdin with prometheus_client's parser
(the reference Python client) and print its families as JSON, or exit 1 with
the parser's complaint. Also refuses what the parser lets through but a
Prometheus server would not take: a family declared twice, a sample without
a family, a counter whose samples do not end in _total."""
import json
import sys

from prometheus_client.parser import text_string_to_metric_families


def main():
    text = sys.stdin.read()
    seen = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            name = line.split()[2]
            if name in seen:
                sys.exit(f"family {name} declared twice")
            seen.add(name)
    families = []
    try:
        for fam in text_string_to_metric_families(text):
            if fam.type == "unknown":
                sys.exit(f"{fam.name}: sample without a # TYPE line")
            samples = [
                {"name": s.name, "labels": s.labels, "value": s.value}
                for s in fam.samples
            ]
            if fam.type == "counter":
                for s in samples:
                    if not s["name"].endswith("_total"):
                        sys.exit(f"counter sample {s['name']} does not end in _total")
            families.append({"name": fam.name, "type": fam.type, "samples": samples})
    except ValueError as e:
        sys.exit(f"prometheus_client refused the document: {e}")
    json.dump(families, sys.stdout)


main()
