#!/usr/bin/env python3
"""PostgreSQL on another machine against sled, in one run (issue 24 §5).

    cargo build --release
    BENCH_KIT=<the kit> python3 benches/pg_latency.py target/release/ordersync [FILES] [ORDERS] [ROUNDS]

`run --once` of the same work on three stores, one after the other, ROUNDS times (default 3),
each time into a new state folder or database:

- sled: the default store, in the work folder;
- socket: PostgreSQL on its unix socket (the database on this machine);
- proxy: the same server through `$BENCH_KIT/latency_proxy.py --delay-ms 0.25` (0.25 ms each
  way, about 0.6 ms a round trip: the database on another machine of a LAN).

Two kinds of work, on each store:
- files: FILES single-order files (default 2,000; `$BENCH_KIT/genorders.py`);
- bulk: one ndjson file of ORDERS orders (default 10,000; `genorders.py --ndjson`).

Config: `[inbox] settle = "0s"`, two json systems `erp` and `wms` (batch 100): every order is
taken in and exported twice. Prints each run's rate and, per row, the best of the rounds and its
ratio to sled's best in the same run. The server is a throwaway cluster of its own (initdb in a
temporary folder, 127.0.0.1 and a unix socket), default settings, stopped at the end. Needs
Debian's postgresql package and `psql`; run as root (the server runs as `postgres`) or as a user
who can run initdb.
"""
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
KIT = Path(os.environ.get("BENCH_KIT", REPO.parent / "shared" / "bench"))
STORES = ["sled", "socket", "proxy"]


def as_postgres(cmd):
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


def main():
    binary = os.path.abspath(sys.argv[1])
    n_files = int(sys.argv[2]) if len(sys.argv) > 2 else 2000
    n_orders = int(sys.argv[3]) if len(sys.argv) > 3 else 10000
    rounds = int(sys.argv[4]) if len(sys.argv) > 4 else 3
    pgbin = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name))[-1]
    root = Path(tempfile.mkdtemp(prefix="pg_latency."))
    os.chmod(root, 0o777)
    data, port = root / "data", 55431
    subprocess.run(as_postgres([f"{pgbin}/initdb", "-D", str(data), "-U", "postgres", "--auth=trust",
                                "-E", "UTF8", "--locale=C.UTF-8"]), check=True, stdout=subprocess.DEVNULL)
    subprocess.run(as_postgres([f"{pgbin}/pg_ctl", "-D", str(data), "-l", str(root / "server.log"), "-w", "-o",
                                f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={root}",
                                "start"]), check=True, stdout=subprocess.DEVNULL)
    proxy = subprocess.Popen([sys.executable, str(KIT / "latency_proxy.py"), str(port), "--delay-ms", "0.25"],
                             stdout=subprocess.PIPE, text=True)
    try:
        proxy_port = int(proxy.stdout.readline().split()[-1])
        print(f"latency proxy: {proxy.stdout.readline().strip()}", flush=True)
        work = {
            "files": (root / "files", n_files, []),
            "bulk": (root / "bulk", n_orders, ["--ndjson", str(n_orders)]),
        }
        for folder, n, extra in work.values():
            subprocess.run([sys.executable, str(KIT / "genorders.py"), str(folder), str(n), *extra],
                           check=True, stdout=subprocess.DEVNULL)
        results = {}
        k = 0
        for rnd in range(rounds):
            for kind, (folder, n, _) in work.items():
                for store in STORES:
                    k += 1
                    rate = once(binary, root, port, proxy_port, folder, store, f"b{k}", n)
                    results.setdefault((kind, store), []).append(rate)
                    unit = "files/s" if kind == "files" else "orders/s"
                    print(f"round {rnd + 1} {kind:5} {store:6} {rate:8,.0f} {unit}", flush=True)
        print()
        for kind in work:
            sled = max(results[(kind, "sled")])
            for store in STORES:
                best = max(results[(kind, store)])
                print(f"{kind:5} {store:6} best {best:8,.0f}  ({best / sled:.2f}x sled's in this run)")
    finally:
        proxy.kill()
        subprocess.run(as_postgres([f"{pgbin}/pg_ctl", "-D", str(data), "-m", "fast", "-w", "stop"]),
                       stdout=subprocess.DEVNULL)
        shutil.rmtree(root, ignore_errors=True)


def once(binary, root, port, proxy_port, folder, store, db, n):
    w = Path(tempfile.mkdtemp(dir=root))
    shutil.copytree(folder, w / "inbox")
    section = ""
    if store != "sled":
        subprocess.run(["psql", "-h", str(root), "-p", str(port), "-U", "postgres", "-qc", f"CREATE DATABASE {db}"],
                       check=True)
        url = (f"postgresql://postgres@127.0.0.1:{proxy_port}/{db}?sslmode=disable" if store == "proxy"
               else f"host={root} port={port} user=postgres dbname={db}")
        section = f'[store]\nbackend = "postgres"\nurl = "{url}"\n'
    (w / "config.toml").write_text(
        f'[inbox]\nsettle = "0s"\n{section}'
        '[[systems]]\nid = "erp"\nbatch_size = 100\n[[systems]]\nid = "wms"\nbatch_size = 100\n')
    start = time.perf_counter()
    r = subprocess.run([binary, "run", "--once"], cwd=w, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                       text=True, env=dict(os.environ, RUST_LOG="error"))
    took = time.perf_counter() - start
    left = os.listdir(w / "inbox")
    if r.returncode != 0 or left:
        sys.exit(f"{store}: run --once failed (exit {r.returncode}, {len(left)} files left): {r.stderr[-2000:]}")
    shutil.rmtree(w)
    if store != "sled":
        subprocess.run(["psql", "-h", str(root), "-p", str(port), "-U", "postgres", "-qc", f"DROP DATABASE {db}"],
                       check=True)
    return n / took


if __name__ == "__main__":
    main()
