#!/usr/bin/python3
"""test/bench/sched_listen.py: the listening worker of BENCH_MODE=scheduler.

    sched_listen.py CONNINFO OUTFILE

LISTENs on rungate_queued and writes one line per notification to OUTFILE:
the time it was received (Unix epoch seconds, this machine's clock, which is
the server's: the benchmark runs on one host), a tab, and the payload. Prints
"ready" on stdout once the LISTEN is in effect, and runs until it is
terminated (SIGTERM). Waits on the connection's socket, so a notification
is timed when it arrives, not when the script next looks.

psycopg 3 (Debian's python3-psycopg); only libpq's calls are used, so 3.0
and later do.
"""
import select
import signal
import sys
import time

import psycopg


def main():
    conninfo, outfile = sys.argv[1], sys.argv[2]
    conn = psycopg.connect(conninfo, autocommit=True)
    conn.execute("LISTEN rungate_queued")
    pg = conn.pgconn
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with open(outfile, "w", buffering=1) as out:
        print("ready", flush=True)
        while True:
            readable, _, _ = select.select([pg.socket], [], [], 1.0)
            if not readable:
                continue
            received = time.time()
            pg.consume_input()
            while True:
                n = pg.notifies()
                if n is None:
                    break
                out.write("%.6f\t%s\n" % (received, n.extra.decode()))


if __name__ == "__main__":
    main()
