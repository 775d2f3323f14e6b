#!/usr/bin/env python3
"""A failover soak for an active/standby pair (CONTRACT.md §14).

Runs two `ordersync run` nodes on this machine on one PostgreSQL database
and one spool, each with its own state folder and HTTP port, while a feeder
drops order files and regulating acknowledgements into the shared inbox.
Every INTERVAL seconds the leader is killed (kill -9, then restarted as a
standby) or frozen (SIGSTOP until the other leads, then SIGCONT), in turn.
At the end it waits for the inbox to drain and checks: every order exported
exactly once, nothing in errors/, no export file name repeated, the stock
exact, and one leader. It prints each takeover time.

    benches/failover_soak.py BINARY [--minutes 60] [--interval 20]
        [--conninfo "host=/run/postgresql user=postgres"] [--lease 5s]

Without --conninfo it starts a throwaway cluster with .ci/pg-cluster (which
needs Debian's postgresql package). Exit status 0 when every check holds.
"""

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def order(ext, sku):
    return {
        "external_id": ext, "type": "Sales Order", "currency": "EUR",
        "reference": f"ref-{ext}", "created": 1790000000000, "updated": 1790000000000,
        "line_items": [{"sku": sku, "qty_ordered": 1, "unit_price": 10.0}],
        "billing_address": {"address1": "Main St 1", "city": "Berlin", "country": "DE"},
        "shipping_address": {"address1": "Main St 1", "city": "Berlin", "country": "DE"},
        "shipping_rule": {"name": "DHL", "recovery": 5.0},
        "tax_rule": {"name": "VAT", "inclusive": False, "rate": 0.19},
    }


def drop(inbox, name, text):
    tmp = os.path.join(inbox, "." + name + ".tmp")
    with open(tmp, "w") as f:
        f.write(text)
    os.rename(tmp, os.path.join(inbox, name))


def health(port):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
            return json.load(r)
    except Exception:
        return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binary")
    ap.add_argument("--minutes", type=float, default=60)
    ap.add_argument("--interval", type=float, default=20)
    ap.add_argument("--conninfo")
    ap.add_argument("--lease", default="5s")
    a = ap.parse_args()
    a.binary = os.path.abspath(a.binary)

    cluster = None
    conninfo = a.conninfo
    if not conninfo:
        conninfo = subprocess.check_output([f"{ROOT}/.ci/pg-cluster", "start"], text=True).strip()
        cluster = conninfo.split("host=")[1].split()[0]
    db = f"soak_{os.getpid()}"
    subprocess.run(["psql", f"{conninfo} dbname=postgres", "-qc", f"CREATE DATABASE {db}"], check=True)
    work = tempfile.mkdtemp(prefix="ordersync-soak.")
    inbox = os.path.join(work, "spool/inbox")
    os.makedirs(inbox)
    ports = {"a": 18600 + random.randrange(300), "b": 18950 + random.randrange(300)}
    for n, port in ports.items():
        with open(os.path.join(work, f"{n}.toml"), "w") as f:
            f.write(f"""[paths]
inbox = "spool/inbox"
outbox = "spool/outbox"
archive = "spool/archive"
errors = "spool/errors"
state = "state-{n}"
[inbox]
settle = "0s"
rescan = "1s"
[store]
backend = "postgres"
url = "{conninfo} dbname={db}"
[cluster]
node = "{n}"
lease = "{a.lease}"
[http]
listen = "127.0.0.1:{port}"
[[systems]]
id = "erp"
""")
    procs = {}

    def start(n):
        log = open(os.path.join(work, f"{n}.log"), "a")
        procs[n] = subprocess.Popen([a.binary, "--config", f"{n}.toml", "run"], cwd=work,
                                    stdout=subprocess.DEVNULL, stderr=log,
                                    env=dict(os.environ, RUST_LOG="info"))

    def leader():
        for n, port in ports.items():
            h = health(port)
            if h and h.get("role") == "leader" and procs[n].poll() is None:
                return n
        return None

    def wait_leader(other_than=None, timeout=120):
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            n = leader()
            if n and n != other_than:
                return n, time.monotonic() - t0
            time.sleep(0.05)
        sys.exit(f"no node led within {timeout} s")

    # Stock for the feeder's orders, before any order.
    skus = [f"S{i}" for i in range(10)]
    drop(inbox, "stock.csv", "sku,in_stock\n" + "".join(f"{s},1000000\n" for s in skus))
    start("a")
    start("b")
    wait_leader()

    stop = threading.Event()
    sent = []
    acked = []

    outbox = os.path.join(work, "spool/outbox/erp")
    seen_files = set()
    exported_ids = []

    def feeder():
        i = 0
        while not stop.is_set():
            ext = f"soak-{i}"
            drop(inbox, f"{ext}.json", json.dumps(order(ext, skus[i % len(skus)])))
            sent.append((ext, skus[i % len(skus)]))
            # Every fifth order, a regulating ack of an order already in an
            # export file (the ERP's answer), once each.
            if i % 5 == 0 and os.path.isdir(outbox):
                # Finished files only: one being written has a hidden name.
                done = {n for n in os.listdir(outbox) if n.startswith("orders-") and n.endswith(".json")}
                for name in sorted(done - seen_files):
                    seen_files.add(name)
                    with open(os.path.join(outbox, name)) as f:
                        exported_ids.extend(o["external_id"] for o in json.load(f)["orders"])
                if exported_ids:
                    old = exported_ids.pop(0)
                    drop(inbox, f"ack-{i}.csv", f"order_id,system_id,regulate_inventory\n{old},erp,true\n")
                    acked.append(int(old.split("-")[1]))
            i += 1
            time.sleep(0.05)

    t = threading.Thread(target=feeder)
    t.start()
    takeovers = {"kill": [], "freeze": []}
    end = time.monotonic() + a.minutes * 60
    kind = "kill"
    while time.monotonic() < end:
        time.sleep(random.uniform(a.interval / 2, a.interval))
        old, _ = wait_leader()
        other = "b" if old == "a" else "a"
        if kind == "kill":
            procs[old].send_signal(signal.SIGKILL)
            procs[old].wait()
            _, took = wait_leader(other_than=old)
            start(old)
        else:
            procs[old].send_signal(signal.SIGSTOP)
            _, took = wait_leader(other_than=old)
            time.sleep(2)
            procs[old].send_signal(signal.SIGCONT)
        takeovers[kind].append(round(took, 2))
        print(f"{kind} of {old}: {other} led after {took:.2f} s", flush=True)
        kind = "freeze" if kind == "kill" else "kill"
    stop.set()
    t.join()

    # Drained: nothing left in the inbox, nothing pending.
    t0 = time.monotonic()
    while time.monotonic() - t0 < 300:
        left = [f for f in os.listdir(inbox) if not f.startswith(".")]
        st = json.loads(subprocess.check_output([a.binary, "--config", "a.toml", "status", "--json"], cwd=work))
        if not left and st["systems"]["erp"]["pending"] == 0:
            break
        time.sleep(1)
    failures = []
    names = sorted(n for n in os.listdir(outbox) if not n.startswith("."))
    seqs = [n.rsplit("-", 1)[1].split(".")[0] for n in names]
    if len(set(seqs)) != len(seqs):
        failures.append("an export sequence number repeated")
    exported = {}
    for n in names:
        with open(os.path.join(outbox, n)) as f:
            for o in json.load(f)["orders"]:
                exported[o["external_id"]] = exported.get(o["external_id"], 0) + 1
    twice = [e for e, c in exported.items() if c > 1]
    missing = [e for e, _ in sent if e not in exported]
    if twice:
        failures.append(f"exported more than once: {twice[:10]}")
    if missing:
        failures.append(f"never exported: {missing[:10]}")
    errors_dir = os.path.join(work, "spool/errors")
    errors = os.listdir(errors_dir) if os.path.isdir(errors_dir) else []
    if errors:
        failures.append(f"files in errors/: {sorted(errors)[:10]}")
    inv = json.loads(subprocess.check_output([a.binary, "--config", "a.toml", "inventory", "--json"], cwd=work))
    regulated = {}
    for i in set(acked):
        regulated[sent[i][1]] = regulated.get(sent[i][1], 0) + 1
    rows = inv if isinstance(inv, list) else inv.get("skus", inv)
    for row in rows:
        sku = row["sku"]
        want = 1000000 - regulated.get(sku, 0)
        if row["in_stock"] != want:
            failures.append(f"{sku}: in_stock {row['in_stock']}, expected {want}")
    leaders = [n for n in ports if (health(ports[n]) or {}).get("role") == "leader"]
    if len(leaders) != 1:
        failures.append(f"leaders at the end: {leaders}")
    for p in procs.values():
        p.send_signal(signal.SIGTERM)
        p.wait()
    print(json.dumps({"orders": len(sent), "acks": len(acked), "export_files": len(names),
                      "takeover_s": takeovers, "failures": failures, "work": work}, indent=1))
    if cluster:
        subprocess.run([f"{ROOT}/.ci/pg-cluster", "stop", cluster])
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
