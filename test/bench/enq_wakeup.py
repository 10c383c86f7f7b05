#!/usr/bin/python3
"""test/bench/enq_wakeup.py: wake-up latency of BENCH_MODE=enqueue.

    enq_wakeup.py CONNINFO N OUTFILE

One session LISTENs on rungate_queued, another enqueues N due runs one at a
time (autocommit: each enqueue is committed when it returns), pausing a
random 0 to 10 ms after each wake-up, so that the enqueues fall both inside
and outside rungate.wakeup_window (5 ms) of the previous hint: leading hints
(sent by the committing enqueue) and trailing ones (sent by the scheduler)
are both measured. Per enqueue: the time from its commit to the first
notification received after it (any: a worker woken after the commit claims
on a snapshot that has the run). A run with none within 2 s is counted as
lost. Writes one line per enqueue to OUTFILE: the latency in seconds, or
"lost".
"""
import random
import select
import sys
import time

import psycopg


def main():
    conninfo, n, outfile = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    listener = psycopg.connect(conninfo, autocommit=True)
    listener.execute("LISTEN rungate_queued")
    lpg = listener.pgconn
    enq = psycopg.connect(conninfo, autocommit=True)
    rng = random.Random(24)

    def drain():
        lpg.consume_input()
        got = False
        while lpg.notifies() is not None:
            got = True
        return got

    with open(outfile, "w") as out:
        for i in range(n):
            a = rng.randint(1, 2000)
            drain()                       # hints of earlier enqueues
            enq.execute("SELECT id FROM rungate.enqueue('inventory.sync', 1, %s, %s)",
                        ((a - 1) // 10 + 1, a))
            committed = time.time()
            heard = None
            while time.time() - committed < 2.0:
                r, _, _ = select.select([lpg.socket], [], [], 0.05)
                if r and drain():
                    heard = time.time()
                    break
            out.write("lost\n" if heard is None else "%.6f\n" % (heard - committed))
            time.sleep(rng.uniform(0, 0.010))


if __name__ == "__main__":
    main()
