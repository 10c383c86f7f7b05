#!/usr/bin/env python3
"""A rungate worker for a scale-out (docs/scale-out.md): one claim loop per shard.

    python3 examples/proxy/worker.py \\
        --shard 'host=db0 dbname=app user=app_worker' \\
        --shard 'host=db1 dbname=app user=app_worker' \\
        -- --batch 10 --exit-when-idle 5

Each shard of a scale-out is a complete rungate: its runs, its queue, its
leases, its NOTIFY channels. So a worker serves shards, not the front: it
LISTENs on each shard (a NOTIFY on a shard reaches only that shard's
listeners; the front never sees it), claims on each shard, and heartbeats,
rechecks and completes a run on the shard that handed it out, where a write
family's recheck, side effects and completion are one transaction.

This supervisor starts, for every --shard connection string, one
examples/python/worker.py (the single-node worker, unchanged) connected to
that shard, named <name>@shard<i>, with the arguments after "--". So every
behaviour that worker is tested for (batches, heartbeats that see a
revocation, recheck before side effects, retries, release, rungate_cancelled,
SIGTERM) holds on each shard, and a slow or unreachable shard never stalls
the others. SIGTERM and SIGINT are passed on to every shard's worker; the
supervisor exits when they all have, with the first non-zero status of theirs.

The shards' order does not matter here (a run is reported to the shard that
handed it out); the front's rungate_proxy.check_shards() checks the layout.
"""

import argparse
import os
import signal
import socket
import subprocess
import sys
import time

from psycopg.conninfo import conninfo_to_dict

HERE = os.path.dirname(os.path.abspath(__file__))
SINGLE = os.path.join(HERE, "..", "python", "worker.py")

# libpq reads these; the single-node worker connects with psycopg.connect("")
ENV = {
    "host": "PGHOST", "hostaddr": "PGHOSTADDR", "port": "PGPORT",
    "dbname": "PGDATABASE", "user": "PGUSER", "password": "PGPASSWORD",
    "passfile": "PGPASSFILE", "service": "PGSERVICE", "options": "PGOPTIONS",
    "sslmode": "PGSSLMODE", "sslrootcert": "PGSSLROOTCERT", "sslcert": "PGSSLCERT",
    "sslkey": "PGSSLKEY", "connect_timeout": "PGCONNECT_TIMEOUT",
    "target_session_attrs": "PGTARGETSESSIONATTRS", "gssencmode": "PGGSSENCMODE",
}


def log(name, msg):
    now = time.time()
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now * 1000) % 1000:03d}Z"
    print(f"{stamp} {name} {msg}", flush=True)


def shard_env(dsn):
    """The environment of a worker for one shard: the caller's, with the
    connection string's parameters in the libpq variables."""
    env = {k: v for k, v in os.environ.items() if k not in ENV.values()}
    for key, value in conninfo_to_dict(dsn).items():
        if key not in ENV:
            raise ValueError(f"connection parameter {key!r} is not supported here: use a service file")
        env[ENV[key]] = str(value)
    return env


def main(argv=None):
    ap = argparse.ArgumentParser(
        description="rungate worker for a scale-out: one examples/python/worker.py per shard",
        epilog="arguments after -- go to every shard's worker (see examples/python/worker.py --help)")
    ap.add_argument("--shard", action="append", required=True, metavar="CONNINFO",
                    help="a shard's libpq connection string; once per shard")
    ap.add_argument("--worker", default=f"py-{socket.gethostname()}-{os.getpid()}",
                    help="worker name; shard i's worker is <name>@shard<i>")
    argv = sys.argv[1:] if argv is None else argv
    rest = []
    if "--" in argv:
        cut = argv.index("--")
        argv, rest = argv[:cut], argv[cut + 1:]
    args = ap.parse_args(argv)

    children = []
    for i, dsn in enumerate(args.shard):
        name = f"{args.worker}@shard{i}"
        try:
            env = shard_env(dsn)
        except ValueError as e:
            ap.error(f"--shard {i}: {e}")
        proc = subprocess.Popen([sys.executable, "-u", SINGLE, "--worker", name] + rest, env=env)
        log(args.worker, f"shard {i}: worker {name} started (pid {proc.pid})")
        children.append((name, proc))

    def forward(signum, frame):
        log(args.worker, f"{signal.Signals(signum).name}: passing it on to {len(children)} shard worker(s)")
        for _, proc in children:
            if proc.poll() is None:
                proc.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)

    status = 0
    for name, proc in children:
        while True:
            try:
                rc = proc.wait()
                break
            except InterruptedError:
                continue
        log(args.worker, f"worker {name} exited with status {rc}")
        if rc != 0 and status == 0:
            status = rc
    return status


if __name__ == "__main__":
    sys.exit(main())
