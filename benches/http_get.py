#!/usr/bin/env python3
"""GET /v10/orders/export throughput and latency at N stored orders.

    cargo build --release
    python3 benches/http_get.py target/release/ordersync [N]     # N = 100000
    python3 benches/http_get.py target/release/ordersync N DIR   # again on DIR's store

Makes a folder in /tmp with one `transport = "http"` system, writes N orders
as ndjson files of 10,000, ingests them with `run --once`, starts the daemon
with the HTTP API on a free 127.0.0.1 port and times GETs with Python's
urllib (a fresh connection per request). Prints one line per measurement and
the daemon's peak RSS. Nothing is asserted: the figures go into
docs/BENCHMARKS.md by hand.
"""
import hashlib
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

BIN = os.path.abspath(sys.argv[1])
N = int(sys.argv[2]) if len(sys.argv) > 2 else 100_000
TOKEN = "bench-token"
CHANNELS = ["Shopify", "B2B", "Amazon", "Web"]


def order(i):
    created = 1_767_225_600_000 + i * 1000
    return {
        "external_id": f"bench-{i:07d}",
        "type": "Sales Order",
        "channel": CHANNELS[i % 4],
        "currency": "EUR",
        "reference": f"PO-{i}",
        "created": created,
        "updated": created,
        "line_items": [
            {"sku": f"SKU-{i % 500}", "description": "a mug", "qty_ordered": 1 + i % 3, "unit_price": 9.5},
            {"sku": f"SKU-{(i + 7) % 500}", "description": "a lid", "qty_ordered": 1, "unit_price": 2.0},
        ],
        "billing_address": {"company_name": "Acme", "address1": "Main St 1", "city": "Berlin", "postcode": "10115", "country": "DE"},
        "shipping_address": {"company_name": "Acme", "address1": "Main St 1", "city": "Berlin", "postcode": "10115", "country": "DE"},
        "shipping_rule": {"name": "DHL", "recovery": 5.0},
        "tax_rule": {"name": "VAT", "inclusive": False, "rate": 0.19},
    }


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url):
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {TOKEN}"})
    t = time.perf_counter()
    with urllib.request.urlopen(req, timeout=600) as r:
        body = r.read()
    took = time.perf_counter() - t
    return took, len(json.loads(body)["orders"]), len(body)


def main():
    reuse = len(sys.argv) > 3
    work = sys.argv[3] if reuse else tempfile.mkdtemp(prefix="ordersync-http-bench-")
    port = free_port()
    with open(os.path.join(work, "config.toml"), "w") as f:
        f.write(f"""[inbox]
settle = "0s"
[http]
listen = "127.0.0.1:{port}"
[[http.tokens]]
name = "bench"
sha256 = "{hashlib.sha256(TOKEN.encode()).hexdigest()}"
systems = ["*"]
[[systems]]
id = "erp"
transport = "http"
""")
    os.makedirs(os.path.join(work, "inbox"), exist_ok=True)
    for start in range(0, 0 if reuse else N, 10_000):
        with open(os.path.join(work, "inbox", f"orders-{start:07d}.ndjson"), "w") as f:
            for i in range(start, min(N, start + 10_000)):
                f.write(json.dumps(order(i)) + "\n")
    if not reuse:
        t = time.perf_counter()
        subprocess.run([BIN, "run", "--once"], cwd=work, check=True, env={**os.environ, "RUST_LOG": "warn"})
        print(f"ingest: {N} orders with run --once in {time.perf_counter() - t:.1f} s")
    log = open(os.path.join(work, "daemon.log"), "w")
    d = subprocess.Popen([BIN, "run"], cwd=work, stderr=log, env={**os.environ, "RUST_LOG": "warn"})
    try:
        base = f"http://127.0.0.1:{port}/v10/orders/export?system_id=erp"
        for _ in range(600):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        get(base + "&limit=10")  # warm

        def rss(label):
            with open(f"/proc/{d.pid}/status") as f:
                v = {l.split(":")[0]: int(l.split()[1]) // 1024 for l in f if l.startswith(("VmRSS", "VmHWM"))}
            print(f"  daemon RSS after {label}: {v['VmRSS']} MiB (peak {v['VmHWM']} MiB)")

        def full(extra, label):
            total = 0
            took = 0.0
            size = 0
            page = 0
            while True:
                s, n, b = get(f"{base}&limit=10000&page={page}{extra}")
                took += s
                total += n
                size += b
                if n < 10_000:
                    break
                page += 1
            print(f"{label}: {total} orders in {page + 1} pages of 10,000, {took:.2f} s = {total / took:,.0f} orders/s, {size / 1e6:.0f} MB")

        rss("start")
        full("&includes[]=lines", "full fetch with lines")
        full("", "full fetch without lines")
        rss("full fetches")

        def latency(extra, label, runs=30):
            times = sorted(get(base + extra)[0] for _ in range(runs))
            p50 = statistics.median(times) * 1000
            p95 = times[int(len(times) * 0.95) - 1] * 1000
            print(f"{label}: p50 {p50:.1f} ms, p95 {p95:.1f} ms, max {times[-1] * 1000:.1f} ms ({runs} runs)")

        latency("&limit=100&includes[]=lines", "first page, limit=100, lines")
        latency("&limit=1000&includes[]=lines", "first page, limit=1000, lines")
        latency(f"&limit=1000&page={N // 1000 - 1}", f"last page (page={N // 1000 - 1}), limit=1000", runs=5)
        flt = ("&filter_groups[0][filters][0][key]=reference&filter_groups[0][filters][0][operator]=eq"
               "&filter_groups[0][filters][0][value]=PO-99999")
        latency(flt.replace("[", "%5B").replace("]", "%5D"), "filter matching 1 order (scans all)", runs=5)
        rss("latencies")
        # The client's loop: fetch page 0, mark what came, again until empty.
        t = time.perf_counter()
        total = 0
        while True:
            req = urllib.request.Request(base + "&limit=10000&includes[]=lines",
                                         headers={"Authorization": f"Bearer {TOKEN}"})
            with urllib.request.urlopen(req, timeout=600) as r:
                orders = json.loads(r.read())["orders"]
            if not orders:
                break
            body = json.dumps({"orders": [{"order_id": o["id"], "system_id": "erp",
                                           "regulate_inventory": False} for o in orders]}).encode()
            req = urllib.request.Request(base.split("/v10")[0] + "/v10/orders/mark-as-exported", data=body,
                                         headers={"Authorization": f"Bearer {TOKEN}",
                                                  "Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=600) as r:
                r.read()
            total += len(orders)
        took = time.perf_counter() - t
        print(f"fetch + mark loop (10,000 per call, lines): {total} orders in {took:.1f} s = {total / took:,.0f} orders/s")
        rss("fetch + mark loop")
        # Pending again, so the folder can be measured again.
        subprocess.run([BIN, "reexport", "--system", "erp", "--since", "0"], cwd=work, check=True,
                       stdout=subprocess.DEVNULL)
        rss("reexport")
        with open(f"/proc/{d.pid}/status") as f:
            hwm = [l for l in f if l.startswith("VmHWM")][0].split()[1]
        print(f"daemon peak RSS: {int(hwm) / 1024:.0f} MiB")
    finally:
        d.terminate()
        d.wait(timeout=30)
        print(f"work folder: {work} (remove it by hand)")


if __name__ == "__main__":
    main()
