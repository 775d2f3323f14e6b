#!/usr/bin/env python3
"""Partner remotes (CONTRACT §15) against OpenSSH's own `sftp -b`, in one run, on one sshd.

    cargo build --release
    python3 benches/remote.py target/release/ordersync [FILES] [PUSHES] [BIG_MB] [ROUNDS]

Defaults: FILES 2,000, PUSHES 2,000, BIG_MB 200, ROUNDS 2 (or `$REMOTE_BENCH_FILES`,
`$REMOTE_BENCH_PUSHES`, `$REMOTE_BENCH_BIG_MB`, `$REMOTE_BENCH_ROUNDS`); about 1 minute on
2 quiet cores, 3-4 under heavy load. Starts OpenSSH's sshd on 127.0.0.1 (a free port) as tests/common/sshd.rs does
(ed25519 host and client keys made with ssh-keygen, internal-sftp, LogLevel ERROR, run as
the current user), in a folder under /tmp that is removed at the end. Three measurements:

- pull: FILES single-order JSON files (~1 KB each, the order of tests/common/mod.rs) in the
  partner's `out`. ordersync: `run` with `[[remotes.pull]]` (settle 0s, poll 1s, after
  "delete") into its inbox, one system `erp`; timed from the start of the daemon until `out`
  is empty ("transferred") and until `status --json` counts FILES orders ("applied").
- push: PUSHES export files of system `erp` (`batch_size = 1`), made beforehand with
  `run --once` and no remote; ordersync: `run` with `[[remotes.push]]`, timed until the
  partner's `in` holds PUSHES files.
- big: one BIG_MB file (random bytes) pulled, ignored by the inbox (`*.bin`); timed until
  `out` is empty.

Yardsticks, each in the same run on the same sshd: `sftp -b` with one `get` per file then one
`rm` per file (pull), one `put` per file (push); and the same with `-f` (`get -f`/`put -f`:
each file fsynced, on our side for a get, by the server for a put). What a cron script
would do, without a ledger, a temporary name or a check. Every `sftp` run includes its own
connection and login; every ordersync run includes the daemon's start and its login.

Prints each run, then per row the best of the rounds and the ratio ordersync / `sftp -b` (and
/ `sftp -b -f`) of the bests and within each round, the daemon's CPU time and peak RSS
(VmHWM) in its best round. With `REMOTE_BENCH_STRACE=DIR` the daemon runs under
`strace -f -c -w` (a summary of the calls and their wall time per ordersync run, in DIR; the
rates, CPU and RSS printed are then not meaningful). With `REMOTE_BENCH_PULL_ONLY=1` the
inbox ignores the pulled files (`*.json`): the pull row is the transfer alone, without the
orders' ingest competing for the store and the disk.
Nothing is asserted: the figures go into docs/BENCHMARKS.md by hand.
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def arg(i, env, default):
    return int(sys.argv[i]) if len(sys.argv) > i else int(os.environ.get(env, default))


BIN = os.path.abspath(sys.argv[1])
FILES = arg(2, "REMOTE_BENCH_FILES", 2000)
PUSHES = arg(3, "REMOTE_BENCH_PUSHES", 2000)
BIG_MB = arg(4, "REMOTE_BENCH_BIG_MB", 200)
ROUNDS = arg(5, "REMOTE_BENCH_ROUNDS", 2)
STRACE = os.environ.get("REMOTE_BENCH_STRACE")
PULL_ONLY = os.environ.get("REMOTE_BENCH_PULL_ONLY") == "1"
TICKS = os.sysconf("SC_CLK_TCK")


def order(i):
    """tests/common/mod.rs `order()` with two lines and fuller addresses: about 1 KB
    pretty-printed."""
    ext = f"R-{i:07d}"
    address = {"company_name": "Acme GmbH", "contact_name": "Ada", "contact_email": "ada@example.com",
               "address1": "Main St 1", "city": "Berlin", "postcode": "10115", "country": "DE"}
    return {
        "external_id": ext,
        "type": "Sales Order",
        "currency": "EUR",
        "reference": f"ref-{ext}",
        "created": 1_790_000_000_000,
        "updated": 1_790_000_000_000,
        "line_items": [{"sku": f"SKU-{i % 50}", "description": "a mug", "qty_ordered": 2, "unit_price": 10.0},
                       {"sku": f"SKU-{(i + 7) % 50}", "description": "a lid", "qty_ordered": 1, "unit_price": 4.5}],
        "billing_address": dict(address),
        "shipping_address": dict(address),
        "shipping_rule": {"name": "DHL", "recovery": 5.0},
        "tax_rule": {"name": "VAT", "inclusive": False, "rate": 0.19},
    }


def run(cmd, **kw):
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)
    if r.returncode != 0:
        sys.exit(f"{cmd} failed ({r.returncode}):\n{r.stdout[-2000:]}{r.stderr[-2000:]}")
    return r.stdout


def names(folder):
    """Files in `folder`, hidden ones (temporaries) left out."""
    return [n for n in os.listdir(folder) if not n.startswith(".")]


class Sshd:
    """OpenSSH's sshd on 127.0.0.1, as tests/common/sshd.rs starts it."""

    def __init__(self, root):
        self.dir = root / "ssh"
        self.dir.mkdir()
        for key in ["host_key", "client_key"]:
            run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.dir / key)])
        shutil.copy(self.dir / "client_key.pub", self.dir / "authorized_keys")
        self.key = self.dir / "client_key"
        self.user = run(["id", "-un"]).strip()
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        d = self.dir
        (d / "sshd_config").write_text(
            f"Port {self.port}\nListenAddress 127.0.0.1\nHostKey {d}/host_key\nPidFile {d}/sshd.pid\n"
            f"AuthorizedKeysFile {d}/authorized_keys\nStrictModes no\nUsePAM no\n"
            "PasswordAuthentication no\nKbdInteractiveAuthentication no\nPubkeyAuthentication yes\n"
            f"PermitRootLogin prohibit-password\nAllowUsers {self.user}\nSubsystem sftp internal-sftp\n"
            "LogLevel ERROR\n")
        os.makedirs("/run/sshd", exist_ok=True)  # sshd run by root insists on it
        self.proc = subprocess.Popen(["/usr/sbin/sshd", "-D", "-e", "-f", str(d / "sshd_config")],
                                     stdout=subprocess.DEVNULL, stderr=open(d / "sshd.log", "w"))
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        else:
            sys.exit(f"sshd did not listen: {(d / 'sshd.log').read_text()}")
        host = (d / "host_key.pub").read_text().split()[:2]
        self.known_hosts = root / "known_hosts"
        self.known_hosts.write_text(f"[127.0.0.1]:{self.port} {' '.join(host)}\n")

    def sftp(self, batch):
        """`sftp -b` of the commands in `batch`: its wall time."""
        f = self.dir / "batch"
        f.write_text("".join(line + "\n" for line in batch))
        cmd = ["sftp", "-q", "-b", str(f), "-F", "/dev/null", "-i", str(self.key), "-P", str(self.port),
               "-o", f"UserKnownHostsFile={self.known_hosts}", "-o", "GlobalKnownHostsFile=/dev/null",
               "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", f"{self.user}@127.0.0.1"]
        start = time.perf_counter()
        run(cmd)
        return time.perf_counter() - start

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)


class Daemon:
    """`ordersync run` in `work`, with its CPU time and peak RSS read before it stops."""

    def __init__(self, work, label):
        self.work = work
        self.log = open(work / "daemon.log", "w")
        cmd = [BIN, "run"]
        if STRACE:
            cmd = ["strace", "-f", "-c", "-w", "-o", str(Path(STRACE) / f"{label}.txt"), *cmd]
        self.proc = subprocess.Popen(cmd, cwd=work, stdout=subprocess.DEVNULL, stderr=self.log,
                                     env=dict(os.environ, RUST_LOG="warn"))

    def check(self):
        if self.proc.poll() is not None:
            sys.exit(f"the daemon exited ({self.proc.returncode}):\n{(self.work / 'daemon.log').read_text()[-3000:]}")

    def usage(self):
        """(CPU seconds, peak RSS in MiB) of the daemon so far."""
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        cpu = (int(fields[11]) + int(fields[12])) / TICKS
        with open(f"/proc/{self.proc.pid}/status") as f:
            hwm = [l for l in f if l.startswith("VmHWM")][0].split()[1]
        return cpu, int(hwm) / 1024

    def stop(self):
        usage = self.usage()
        if STRACE:  # the daemon is strace's child: it gets the signal, strace prints when it ends
            with open(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children") as f:
                os.kill(int(f.read().split()[0]), signal.SIGTERM)
        else:
            self.proc.send_signal(signal.SIGTERM)
        if self.proc.wait(timeout=60) != 0:
            sys.exit(f"the daemon's stop failed:\n{(self.work / 'daemon.log').read_text()[-3000:]}")
        return usage

    def status(self):
        out = subprocess.run([BIN, "status", "--json"], cwd=self.work, stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, text=True)
        return json.loads(out.stdout) if out.returncode == 0 else {}


def wait(what, daemon, check, timeout=600, every=0.02):
    start = time.perf_counter()
    while not check():
        daemon.check()
        if time.perf_counter() - start > timeout:
            sys.exit(f"timed out waiting for {what}:\n{(daemon.work / 'daemon.log').read_text()[-3000:]}")
        time.sleep(every)


def config(sshd, work, extra_inbox="", system="", remote=""):
    (work / "config.toml").write_text(
        f'[inbox]\nsettle = "0s"\n{extra_inbox}'
        f'[[systems]]\nid = "erp"\n{system}'
        + (f'[[remotes]]\nname = "acme"\nhost = "127.0.0.1"\nport = {sshd.port}\nuser = "{sshd.user}"\n'
           f'identity = "{sshd.key}"\nknown_hosts = "{sshd.known_hosts}"\npoll = "1s"\n{remote}'
           if remote else ""))


def fresh(root, name):
    d = root / name
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    return d


def link_all(src, into):
    for n in os.listdir(src):
        os.link(src / n, into / n)


def pull_sftp(sshd, root, src, fsync):
    out, local = fresh(root, "partner/out"), fresh(root, "sftp-local")
    link_all(src, out)
    files = sorted(os.listdir(out))
    get = "get -f" if fsync else "get"
    took = sshd.sftp([f"{get} {out}/{n} {local}/{n}" for n in files] + [f"rm {out}/{n}" for n in files])
    if len(names(local)) != len(files) or os.listdir(out):
        sys.exit("sftp pull: files missing")
    return took


def pull_ordersync(sshd, root, src, label, expect_orders):
    """(seconds until `out` is empty, seconds until the orders are applied, cpu, rss)."""
    out, work = fresh(root, "partner/out"), fresh(root, "w-" + label)
    link_all(src, out)
    ignore = '[".*", "*.bin", "*.json"]' if PULL_ONLY else '[".*", "*.bin"]'
    config(sshd, work, extra_inbox=f"ignore = {ignore}\n",
           remote=f'[[remotes.pull]]\nfrom = "{out}"\ninto = "inbox"\nsettle = "0s"\nafter = "delete"\n')
    start = time.perf_counter()
    d = Daemon(work, label)
    try:
        wait("the partner's out emptied", d, lambda: not os.listdir(out))
        emptied = time.perf_counter() - start
        applied = emptied
        if expect_orders:
            wait("the orders applied", d, lambda: d.status().get("orders") == expect_orders, every=0.05)
            applied = time.perf_counter() - start
        cpu, rss = d.stop()
    except BaseException:
        d.proc.kill()
        raise
    shutil.rmtree(work)
    return emptied, applied, cpu, rss


def push_prepare(root, n):
    """A work folder whose outbox/erp holds n export files (batch_size 1), and a copy of them."""
    work = fresh(root, "w-push-src")
    (work / "inbox").mkdir()
    for i in range(n):
        (work / "inbox" / f"order-{i:07d}.json").write_text(json.dumps(order(i), indent=2))
    (work / "config.toml").write_text('[inbox]\nsettle = "0s"\n[[systems]]\nid = "erp"\nbatch_size = 1\n')
    run([BIN, "run", "--once"], cwd=work, env=dict(os.environ, RUST_LOG="error"))
    files = sorted(names(work / "outbox" / "erp"))
    files = [f for f in files if (work / "outbox" / "erp" / f).is_file()]
    if len(files) != n:
        sys.exit(f"push: {len(files)} export files made, not {n}")
    copy = fresh(root, "push-files")
    for f in files:
        shutil.copy(work / "outbox" / "erp" / f, copy / f)
    return work, copy


def push_sftp(sshd, root, copy, fsync):
    into = fresh(root, "partner/in")
    put = "put -f" if fsync else "put"
    files = sorted(os.listdir(copy))
    took = sshd.sftp([f"{put} {copy}/{n} {into}/{n}" for n in files])
    if len(names(into)) != len(files):
        sys.exit("sftp push: files missing")
    return took


def push_ordersync(sshd, root, prepared, n, label):
    into = fresh(root, "partner/in")
    work = root / ("w-" + label)
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(prepared, work)
    config(sshd, work, system="batch_size = 1\n",
           remote=f'[[remotes.push]]\nsystem = "erp"\nto = "{into}"\n')
    start = time.perf_counter()
    d = Daemon(work, label)
    try:
        wait("the files delivered", d, lambda: len(names(into)) >= n)
        took = time.perf_counter() - start
        cpu, rss = d.stop()
    except BaseException:
        d.proc.kill()
        raise
    left = [f for f in names(work / "outbox" / "erp") if f != "sent"]
    if len(names(into)) != n or left:
        sys.exit(f"push: {len(names(into))} delivered, {len(left)} left in the outbox")
    shutil.rmtree(work)
    return took, cpu, rss


def main():
    root = Path(tempfile.mkdtemp(prefix="ordersync-remote-bench."))
    sshd = Sshd(root)
    try:
        small = fresh(root, "src-small")
        for i in range(FILES):
            (small / f"order-{i:07d}.json").write_text(json.dumps(order(i), indent=2))
        size = sum(os.path.getsize(small / n) for n in os.listdir(small)) / max(FILES, 1)
        big = fresh(root, "src-big")
        with open(big / "big.bin", "wb") as f:
            for _ in range(BIG_MB):
                f.write(os.urandom(1 << 20))
        t = time.perf_counter()
        prepared, push_copy = push_prepare(root, PUSHES)
        print(f"made {PUSHES} export files with run --once in {time.perf_counter() - t:.1f} s", flush=True)
        push_size = sum(os.path.getsize(push_copy / n) for n in os.listdir(push_copy)) / max(PUSHES, 1)
        print(f"sshd on 127.0.0.1:{sshd.port}; pull {FILES} files of {size:,.0f} B; "
              f"push {PUSHES} export files of {push_size:,.0f} B; big {BIG_MB} MiB; {ROUNDS} round(s)",
              flush=True)
        res = {}

        def note(key, value, text):
            res.setdefault(key, []).append(value)
            print(f"  {text}", flush=True)

        for rnd in range(1, ROUNDS + 1):
            print(f"round {rnd}", flush=True)
            for f in (False, True):
                t = pull_sftp(sshd, root, small, f)
                note(("pull", "sftp-f" if f else "sftp"), FILES / t,
                     f"pull  sftp -b{' -f' if f else '   '}      {FILES / t:9,.0f} files/s  ({t:.2f} s)")
            e, a, cpu, rss = pull_ordersync(sshd, root, small, f"pull-{rnd}", 0 if PULL_ONLY else FILES)
            applied = "not applied (REMOTE_BENCH_PULL_ONLY)" if PULL_ONLY else \
                f"all applied at {a:.2f} s = {FILES / a:,.0f} files/s"
            note(("pull", "ordersync"), FILES / e,
                 f"pull  ordersync        {FILES / e:9,.0f} files/s  ({e:.2f} s to an empty out; "
                 f"{applied}; CPU {cpu:.2f} s; peak RSS {rss:.1f} MiB)")
            res.setdefault(("pull", "applied"), []).append(FILES / a)
            res.setdefault(("pull", "cpu"), []).append(cpu)
            res.setdefault(("pull", "rss"), []).append(rss)
            for f in (False, True):
                t = push_sftp(sshd, root, push_copy, f)
                note(("push", "sftp-f" if f else "sftp"), PUSHES / t,
                     f"push  sftp -b{' -f' if f else '   '}      {PUSHES / t:9,.0f} files/s  ({t:.2f} s)")
            t, cpu, rss = push_ordersync(sshd, root, prepared, PUSHES, f"push-{rnd}")
            note(("push", "ordersync"), PUSHES / t,
                 f"push  ordersync        {PUSHES / t:9,.0f} files/s  ({t:.2f} s; CPU {cpu:.2f} s; peak RSS {rss:.1f} MiB)")
            res.setdefault(("push", "cpu"), []).append(cpu)
            res.setdefault(("push", "rss"), []).append(rss)
            for f in (False, True):
                out, local = fresh(root, "partner/out"), fresh(root, "sftp-local")
                link_all(big, out)
                get = "get -f" if f else "get"
                t = sshd.sftp([f"{get} {out}/big.bin {local}/big.bin", f"rm {out}/big.bin"])
                note(("big", "sftp-f" if f else "sftp"), BIG_MB / t,
                     f"big   sftp -b{' -f' if f else '   '}      {BIG_MB / t:9,.1f} MiB/s    ({t:.2f} s)")
                shutil.rmtree(local)
            e, _, cpu, rss = pull_ordersync(sshd, root, big, f"big-{rnd}", 0)
            note(("big", "ordersync"), BIG_MB / e,
                 f"big   ordersync        {BIG_MB / e:9,.1f} MiB/s    ({e:.2f} s; CPU {cpu:.2f} s; peak RSS {rss:.1f} MiB)")
            res.setdefault(("big", "cpu"), []).append(cpu)
            res.setdefault(("big", "rss"), []).append(rss)

        print()
        print(f"best of {ROUNDS} round(s)    ordersync         sftp -b  ratio    sftp -b -f  ratio  "
              f"(ratios within each round)   daemon CPU  peak RSS")
        rows = [("pull", f"pull {FILES} files", "files/s"), ("push", f"push {PUSHES} files", "files/s"),
                ("big", f"pull {BIG_MB} MiB", "MiB/s")]
        for kind, label, unit in rows:
            o, s, sf = (res[(kind, k)] for k in ("ordersync", "sftp", "sftp-f"))
            i = o.index(max(o))
            per = ", ".join(f"{a / b:.2f}/{a / c:.2f}" for a, b, c in zip(o, s, sf))
            print(f"{label:22} {max(o):9,.1f} {unit:7} {max(s):9,.1f} {max(o) / max(s):5.2f}x  {max(sf):9,.1f} "
                  f"{max(o) / max(sf):5.2f}x  ({per})   {res[(kind, 'cpu')][i]:6.2f} s  {res[(kind, 'rss')][i]:6.1f} MiB")
        a = res[("pull", "applied")]
        if not PULL_ONLY:
            print(f"pull, until all applied: {max(a):,.1f} files/s ({max(a) / max(res[('pull', 'sftp')]):.2f}x sftp -b)")
    finally:
        sshd.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
