#!/usr/bin/env python3
"""Where ordersync's time goes on PostgreSQL: every statement it sends, counted and timed
by the server.

    cargo build --release
    BENCH_KIT=<the kit> python3 benches/pg_statements.py target/release/ordersync bulk 2000
    BENCH_KIT=<the kit> python3 benches/pg_statements.py target/release/ordersync files 1000
    BENCH_KIT=<the kit> python3 benches/pg_statements.py target/release/ordersync get 10000

Starts a throwaway cluster (`.ci/pg-cluster start`) and runs `ordersync run --once` twice,
each time into a new database, as the load bench's rows do (settle 0, two json systems erp
and wms, batch 100):

- `bulk N`: one ndjson file of N orders (`$BENCH_KIT/genorders.py --ndjson N`);
- `files N`: N single-order files (as `side_by_side.py`).

The first run is timed: wall time, ordersync's CPU (GNU time: that process only) and the
server's CPU (every process of the cluster, from /proc, polled every 20 ms). The wall time
neither of them spent is waiting (fsync, the scheduler; on a shared machine, the others).
The second run is on a database with `log_min_duration_statement = 0` (every statement of
its sessions is logged with its duration; nothing else on the server is): it prints each
statement (parameters elided) with its executions, executions per order, and the server's
time in it (parse, bind and execute summed), and the totals. Logging slows the server: take
times from the first run.

- `get N`: N orders (ndjson files of 10,000) with a third system `api` (`transport =
  "http"`: every order pending for it) ingested by `run --once`, then `ordersync run` with
  the HTTP API and one `GET /v10/orders/export?system_id=api` whose filter (`reference eq`)
  matches the last order: timed, then again with the statements logged (per order = per
  candidate).

Stops the cluster at the end. Needs `psql` and GNU time (`/usr/bin/time`).
"""
import collections
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
KIT = Path(os.environ.get("BENCH_KIT", REPO.parent / "shared" / "bench"))
CONFIG = """[inbox]
settle = "0s"
rescan = "1h"
[store]
backend = "postgres"
url = "{url}"
[[systems]]
id = "erp"
format = "json"
batch_size = 100
[[systems]]
id = "wms"
format = "json"
batch_size = 100
"""
GET_CONFIG = """[[systems]]
id = "api"
transport = "http"
[http]
listen = "127.0.0.1:{port}"
[[http.tokens]]
name = "bench"
sha256 = "{sha}"
systems = ["*"]
"""
TOKEN = "bench-token"
# "2026-12-06 08:01:02.123 UTC [1234] LOG:  duration: 0.052 ms  execute s3: SELECT …"
LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+ \S+ \[(\d+)\] (\w+):\s+(.*)$")
DURATION = re.compile(r"duration: ([\d.]+) ms\s+(parse|bind|execute|statement)\s*([^:]*):\s*(.*)$", re.S)


def psql(base, db, sql):
    subprocess.run(["psql", "-q", "-X", "-v", "ON_ERROR_STOP=1", f"{base} dbname={db}", "-c", sql],
                   check=True, stdout=subprocess.DEVNULL)


def entries(log_text):
    """(pid, level, text) per log entry, continuation lines joined."""
    cur = None
    for line in log_text.splitlines():
        m = LINE.match(line)
        if m:
            if cur:
                yield cur
            cur = [m.group(1), m.group(2), m.group(3)]
        elif cur:
            cur[2] += "\n" + line
    if cur:
        yield cur


def cluster_cpu(data, stop, out):
    """Sums utime+stime (seconds) of the cluster's processes, each at its last sight."""
    tick = os.sysconf("SC_CLK_TCK")
    pm = int((data / "postmaster.pid").read_text().split()[0])
    seen = {}
    while True:
        for p in Path("/proc").iterdir():
            if not p.name.isdigit():
                continue
            try:
                stat = (p / "stat").read_text()
            except OSError:
                continue
            f = stat[stat.rindex(")") + 2:].split()
            pid, ppid = int(p.name), int(f[1])
            if pid == pm or ppid == pm:
                seen[pid] = (int(f[11]) + int(f[12])) / tick
        if stop():
            break
        time.sleep(0.02)
    out.append(sum(seen.values()))


def run_once(exe, base, db, mode, n, data, log_statements):
    psql(base, "postgres", f"CREATE DATABASE {db}")
    if log_statements:
        psql(base, "postgres", f"ALTER DATABASE {db} SET log_min_duration_statement = 0")
    work = Path(tempfile.mkdtemp(prefix="ordersync-pg-statements-"))
    try:
        (work / "config.toml").write_text(CONFIG.format(url=f"{base} dbname={db}"))
        (work / "inbox").mkdir()
        gen = ["--ndjson", str(n)] if mode == "bulk" else []
        subprocess.run([sys.executable, str(KIT / "genorders.py"), str(work / "inbox"), str(n), *gen],
                       check=True)
        import threading
        done = []
        cpu = []
        before = []
        # The server's CPU before the run (its processes that stay), then after.
        cluster_cpu(data, lambda: True, before)
        th = threading.Thread(target=cluster_cpu, args=(data, lambda: bool(done), cpu))
        th.start()
        t = time.time()
        out = subprocess.run(["/usr/bin/time", "-f", "%e %U %S %M", exe, "run", "--once"], cwd=work,
                             env={**os.environ, "RUST_LOG": "warn"}, capture_output=True, text=True)
        wall = time.time() - t
        done.append(1)
        th.join()
        if out.returncode != 0:
            sys.exit(f"ordersync failed:\n{out.stderr}")
        _, user, sys_, rss = out.stderr.strip().splitlines()[-1].split()
        return wall, float(user), float(sys_), int(rss), cpu[0] - before[0]
    finally:
        subprocess.run(["rm", "-rf", str(work)])


def statements(log, start_at, n):
    """The statements logged since `start_at`, counted and timed, per order of `n`."""
    with open(log, errors="replace") as f:
        f.seek(start_at)
        text = f.read()
    calls = collections.Counter()
    server_ms = collections.Counter()
    sessions = set()
    for pid, level, msg in entries(text):
        m = DURATION.search(msg)
        if level != "LOG" or not m:
            continue
        ms, phase, sql = float(m.group(1)), m.group(2), m.group(4)
        sql = " ".join(sql.split())
        key = sql if len(sql) <= 110 else sql[:107] + "..."
        server_ms[key] += ms
        sessions.add(pid)
        if phase in ("execute", "statement"):
            calls[key] += 1
    total_calls = sum(calls.values())
    total_ms = sum(server_ms.values())
    print(f"{len(sessions)} server sessions; statements executed: {total_calls} = {total_calls / n:.1f} "
          f"per order; server time in them {total_ms / 1e3:.2f} s (parse+bind+execute)")
    print(f"{'calls':>8} {'per order':>9} {'server ms':>10}  statement")
    for key, c in sorted(calls.items(), key=lambda kv: -kv[1]):
        print(f"{c:>8} {c / n:>9.2f} {server_ms[key]:>10.1f}  {key}")


def get_mode(exe, base, cluster, n):
    import hashlib
    import socket
    import urllib.request
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    psql(base, "postgres", "CREATE DATABASE load_get")
    work = Path(tempfile.mkdtemp(prefix="ordersync-pg-statements-"))
    d = None
    try:
        (work / "config.toml").write_text(
            CONFIG.format(url=f"{base} dbname=load_get")
            + GET_CONFIG.format(port=port, sha=hashlib.sha256(TOKEN.encode()).hexdigest()))
        subprocess.run([sys.executable, str(KIT / "genorders.py"), str(work / "inbox"), str(n),
                        "--ndjson", "10000"], check=True)
        t = time.time()
        subprocess.run([exe, "run", "--once"], cwd=work, check=True, env={**os.environ, "RUST_LOG": "warn"})
        print(f"ingest: {n} orders, run --once, {time.time() - t:.1f} s")
        log = Path(cluster) / "server.log"
        last = f"G{n - 1:07d}"
        flt = ("&filter_groups[0][filters][0][key]=reference&filter_groups[0][filters][0][operator]=eq"
               f"&filter_groups[0][filters][0][value]=SO%23{last}").replace("[", "%5B").replace("]", "%5D")
        url = f"http://127.0.0.1:{port}/v10/orders/export?system_id=api{flt}"

        def get():
            req = urllib.request.Request(url, headers={"Authorization": f"Bearer {TOKEN}"})
            t = time.time()
            with urllib.request.urlopen(req, timeout=3600) as r:
                body = r.read()
            assert last.encode() in body, "the order was not in the answer"
            return time.time() - t

        for logged in (False, True):
            if logged:
                psql(base, "postgres", "ALTER DATABASE load_get SET log_min_duration_statement = 0")
            d = subprocess.Popen([exe, "run"], cwd=work, stderr=subprocess.DEVNULL,
                                 env={**os.environ, "RUST_LOG": "warn"})
            for _ in range(600):
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    time.sleep(0.1)
            time.sleep(1)
            start_at = log.stat().st_size
            took = get()
            print(f"GET, filter matching 1 of {n} orders{', logged' if logged else ''}: {took:.2f} s")
            d.terminate()
            d.wait(timeout=60)
            d = None
        time.sleep(0.5)
        statements(log, start_at, n)
    finally:
        if d:
            d.kill()
        subprocess.run(["rm", "-rf", str(work)])


def main():
    exe = os.path.abspath(sys.argv[1])
    mode = sys.argv[2] if len(sys.argv) > 2 else "bulk"
    n = int(sys.argv[3]) if len(sys.argv) > 3 else 2000
    base = subprocess.run([str(REPO / ".ci" / "pg-cluster"), "start"], check=True,
                          capture_output=True, text=True).stdout.strip()
    cluster = base.split("host=")[1].split()[0]
    data = Path(cluster) / "data"
    try:
        if mode == "get":
            get_mode(exe, base, cluster, n)
            return
        wall, user, sys_, rss, server = run_once(exe, base, "load_timed", mode, n, data, False)
        waited = max(0.0, wall - user - sys_ - server)
        print(f"ordersync run --once, {mode} {n} orders on PostgreSQL, not logged: wall {wall:.2f} s "
              f"= {n / wall:,.0f} orders/s; ordersync CPU {user + sys_:.2f} s (user {user:.2f}, sys {sys_:.2f}); "
              f"server CPU {server:.2f} s; neither {waited:.2f} s; ordersync peak RSS {rss / 1024:.1f} MiB")
        log = Path(cluster) / "server.log"
        start_at = log.stat().st_size
        wall, *_ = run_once(exe, base, "load_logged", mode, n, data, True)
        time.sleep(0.5)
        print(f"logged run: wall {wall:.2f} s")
        statements(log, start_at, n)
    finally:
        subprocess.run([str(REPO / ".ci" / "pg-cluster"), "stop", cluster])


main()
