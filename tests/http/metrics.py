#!/usr/bin/env python3
"""Fetches an ordersync /metrics page with urllib and parses it with the
prometheus_client OpenMetrics text parser (a real parser, not ours); prints
every sample as JSON lines {"name", "labels", "value"}. Exit 3 when the
prometheus_client package is missing."""
import json
import sys
import urllib.request

try:
    from prometheus_client.openmetrics.parser import text_string_to_metric_families
except ImportError:
    sys.exit(3)

# As Prometheus asks: without it, /metrics answers in the classic text
# format (what promtool reads), which this parser does not take.
request = urllib.request.Request(
    sys.argv[1], headers={"Accept": "application/openmetrics-text; version=1.0.0"})
with urllib.request.urlopen(request, timeout=30) as r:
    ctype = r.headers.get("Content-Type", "")
    text = r.read().decode("utf-8")
out = {"content_type": ctype, "samples": []}
for family in text_string_to_metric_families(text):
    for s in family.samples:
        out["samples"].append({"family": family.name, "type": family.type,
                               "name": s.name, "labels": s.labels, "value": s.value})
print(json.dumps(out))
