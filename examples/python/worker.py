#!/usr/bin/env python3
"""A rungate worker in Python, with psycopg 3 (Debian: python3-psycopg).

    PGDATABASE=app PGUSER=app_worker python3 examples/python/worker.py --exit-when-idle 5

The worker's whole protocol is five SQL functions (CONTRACT §4):

  claim      takes due runs in a batch; rungate decides each one again now and
             blocks, itself, the ones that are no longer legitimate: they are
             never handed to a worker.
  heartbeat  keeps the lease of every run the worker holds (a thread, its own
             connection), so a long run is not reaped and handed to another.
  recheck    for write families (operation_types.writes), decided again right
             before the side effects, in the transaction that makes them and
             completes the run. Denied: the run is now blocked; the worker
             commits that and does nothing else.
  complete / fail
             the outcome; a retryable failure goes back to the queue and is
             decided afresh when it is claimed again.

It waits on LISTEN rungate_queued, and polls as a fallback (a run that becomes
due later, such as a delayed retry, is only found by polling). On SIGTERM (or
SIGINT) it stops claiming, finishes the run in hand, begins the others it holds
while --grace lasts and hands the rest back (a retryable failure, so another
worker takes them at once). One log line per transition.

Connection: the standard libpq environment (PGHOST, PGPORT, PGUSER,
PGDATABASE, PGPASSWORD, ...). The role needs no table privilege on rungate:
USAGE on the schema and EXECUTE on the five functions (docs/privileges.md),
plus whatever the handlers write in the application (examples/app.sql).
"""

import argparse
import os
import select
import signal
import socket
import sys
import threading
import time

import psycopg
from psycopg.types.json import Jsonb


# --------------------------------------------------------------------------
# Handlers: one class per operation type. `writes` mirrors the type's
# operation_types.writes (the worker has no privilege to read that table).
# perform() is the work, with no side effect a revocation must prevent;
# apply() is the side effect of a write family, run only after an allowed
# recheck and in the same transaction as the recheck and the completion.
# --------------------------------------------------------------------------

class Retryable(Exception):
    """A transient error: the run goes back to the queue (attempts permitting)."""

    def __init__(self, message, retry_in=1.0):
        super().__init__(message)
        self.retry_in = retry_in


class Permanent(Exception):
    """An error that no retry will fix: the run fails."""


def simulate(job):
    """Demo knobs in the payload, so the examples can be driven by tests:
    sleep (seconds of work), fail_attempts (fail retryably while attempt <= n),
    fail = "permanent" (fail for good)."""
    p = job.payload
    if p.get("fail") == "permanent":
        raise Permanent("permanent error requested by the payload")
    if job.attempt <= int(p.get("fail_attempts", 0)):
        raise Retryable(f"transient error on attempt {job.attempt}")
    if p.get("sleep"):
        time.sleep(float(p["sleep"]))    # the heartbeat thread keeps the lease


class VerifyProviderConnection:
    writes = False

    def perform(self, job):
        simulate(job)
        return {"verified": True, "tenant_id": job.tenant_id}


class SyncInventory:
    writes = False

    def perform(self, job):
        simulate(job)
        return {"synced": True, "tenant_id": job.tenant_id}


class ExportReport:
    writes = False

    def perform(self, job):
        simulate(job)
        return {"exported": True, "workspace_id": job.workspace_id}


class ExecuteRestore:
    writes = True

    def perform(self, job):
        simulate(job)                    # e.g. fetch and verify the snapshot

    def apply(self, job, cur):
        snapshot = job.payload.get("snapshot", "latest")
        cur.execute("INSERT INTO public.restore_log (run_id, tenant_id, snapshot)"
                    " VALUES (%s, %s, %s)", (job.run_id, job.tenant_id, snapshot))
        return {"restored": snapshot, "tenant_id": job.tenant_id}


HANDLERS = {
    "provider.connection.verify": VerifyProviderConnection(),
    "inventory.sync": SyncInventory(),
    "reports.export": ExportReport(),
    "restore.execute": ExecuteRestore(),
}
# Bulk orchestrators are claimed so that they fan out into their items;
# rungate never hands them to a worker.
ORCHESTRATORS = ["bulk.inventory.sync"]


# --------------------------------------------------------------------------

class Job:
    def __init__(self, row):
        (self.run_id, self.lease_token, self.attempt, self.operation,
         self.workspace_id, self.tenant_id, self.initiator_id, self.payload,
         self.lease_seconds) = row
        self.payload = self.payload or {}


def log(worker, msg):
    now = time.time()
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now * 1000) % 1000:03d}Z"
    print(f"{stamp} {worker} {msg}", flush=True)


def sqlstate(exc):
    return getattr(exc, "sqlstate", None)


class Heartbeats(threading.Thread):
    """Heartbeats every held run at a third of its lease, on its own connection."""

    def __init__(self, worker):
        super().__init__(daemon=True)
        self.worker = worker
        self.done = threading.Event()

    def run(self):
        try:
            conn = psycopg.connect("", autocommit=True,
                                   application_name=f"{self.worker.name} heartbeat")
        except psycopg.Error as e:
            log(self.worker.name, f"heartbeat connection failed: {e}")
            return
        with conn:
            while not self.done.wait(0.2):
                now = time.monotonic()
                for job, due in self.worker.due_heartbeats(now):
                    try:
                        conn.execute("SELECT rungate.heartbeat(%s, %s)",
                                     (job.run_id, job.lease_token))
                        self.worker.beaten(job, now)
                    except psycopg.Error as e:
                        if self.worker.still_holds(job):
                            log(self.worker.name, f"run {job.run_id} {job.operation} "
                                f"attempt {job.attempt}: heartbeat refused: {sqlstate(e)} {e}")


class Worker:
    def __init__(self, args):
        self.args = args
        self.name = args.worker
        self.operations = args.ops.split(",") if args.ops else list(HANDLERS) + ORCHESTRATORS
        self.stop_at = None                      # monotonic time of SIGTERM
        self.lock = threading.Lock()
        self.held = {}                           # run_id -> [job, last heartbeat]
        self.handled = 0

    # ---- the held set, shared with the heartbeat thread
    def hold(self, job):
        with self.lock:
            self.held[job.run_id] = [job, time.monotonic()]

    def drop(self, job):
        with self.lock:
            self.held.pop(job.run_id, None)

    def still_holds(self, job):
        with self.lock:
            return job.run_id in self.held

    def due_heartbeats(self, now):
        with self.lock:
            return [(job, last) for job, last in self.held.values()
                    if now - last >= max(0.5, job.lease_seconds / 3)]

    def beaten(self, job, now):
        with self.lock:
            if job.run_id in self.held:
                self.held[job.run_id][1] = now

    # ---- signals
    def on_signal(self, signum, frame):
        if self.stop_at is None:
            self.stop_at = time.monotonic()
            log(self.name, f"{signal.Signals(signum).name}: no more claims; finishing what is held")

    # ---- the loop
    def run(self):
        self.conn = psycopg.connect("", autocommit=True, application_name=self.name)
        self.listener = psycopg.connect("", autocommit=True,
                                        application_name=f"{self.name} listener")
        self.listener.execute("LISTEN rungate_queued")
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_w, False)
        signal.set_wakeup_fd(wake_w)
        signal.signal(signal.SIGTERM, self.on_signal)
        signal.signal(signal.SIGINT, self.on_signal)
        beats = Heartbeats(self)
        beats.start()
        log(self.name, f"listening on rungate_queued; operations {','.join(self.operations)}")
        idle_since = time.monotonic()
        try:
            while self.stop_at is None:
                want = self.args.batch
                if self.args.max_runs is not None:
                    want = min(want, self.args.max_runs - self.handled)
                    if want <= 0:
                        log(self.name, f"exiting: handled {self.handled} run(s) (--max-runs)")
                        break
                jobs = self.claim(want)
                if jobs:
                    self.work(jobs)
                    idle_since = time.monotonic()
                if self.args.once:
                    log(self.name, "exiting: --once")
                    break
                if jobs:
                    continue
                idle = time.monotonic() - idle_since
                timeout = self.args.poll
                if self.args.exit_when_idle is not None:
                    if idle >= self.args.exit_when_idle:
                        log(self.name, f"exiting: idle for {self.args.exit_when_idle:g}s")
                        break
                    timeout = min(timeout, self.args.exit_when_idle - idle)
                self.wait(timeout, wake_r)
            if self.stop_at is not None:
                log(self.name, "exiting: stopped by signal")
        finally:
            beats.done.set()
            beats.join(2)
            self.listener.close()
            self.conn.close()

    def wait(self, timeout, wake_r):
        """Sleep until a rungate_queued notification, a signal, or the timeout."""
        ready, _, _ = select.select([self.listener.fileno(), wake_r], [], [], max(0, timeout))
        if wake_r in ready:
            os.read(wake_r, 1024)
        if self.listener.fileno() in ready:
            pgconn = self.listener.pgconn
            pgconn.consume_input()
            while pgconn.notifies() is not None:
                pass                             # any number of them: claim until empty

    def claim(self, n):
        rows = self.conn.execute(
            "SELECT run_id, lease_token, attempt, operation, workspace_id, tenant_id,"
            "       initiator_id, payload,"
            "       extract(epoch FROM lease_expires_at - now())::float8"
            "  FROM rungate.claim(%s, %s::text[], %s)",
            (self.name, self.operations, n)).fetchall()
        jobs = [Job(r) for r in rows]
        for job in jobs:
            self.hold(job)
            self.transition(job, "claimed")
        return jobs

    def transition(self, job, what):
        log(self.name, f"run {job.run_id} {job.operation} attempt {job.attempt}: {what}")

    def work(self, jobs):
        for i, job in enumerate(jobs):
            if self.stop_at is not None and time.monotonic() - self.stop_at >= self.args.grace:
                for rest in jobs[i:]:
                    self.fail(rest, "worker shutting down", retry_in=0.0)
                break
            self.process(job)
        self.handled += len(jobs)

    def process(self, job):
        handler = HANDLERS.get(job.operation)
        try:
            if handler is None:
                raise Permanent(f"no handler for {job.operation}")
            result = handler.perform(job)
            self.drop(job)                       # no more heartbeats: we finish it now
            if handler.writes:
                with self.conn.transaction():
                    allowed, code, message = self.conn.execute(
                        "SELECT allowed, reason_code, reason_message"
                        "  FROM rungate.recheck(%s, %s)",
                        (job.run_id, job.lease_token)).fetchone()
                    if not allowed:
                        # the run is blocked now: commit that, make no side effect
                        self.transition(job, f"blocked by recheck: {code} ({message})")
                        return
                    with self.conn.cursor() as cur:
                        result = handler.apply(job, cur)
                    self.complete(job, result)
            else:
                self.complete(job, result)
            self.transition(job, "succeeded")
        except Retryable as e:
            self.fail(job, str(e), retry_in=e.retry_in)
        except Permanent as e:
            self.fail(job, str(e))
        except psycopg.Error as e:
            if sqlstate(e) in ("RG409", "RG404"):
                self.drop(job)
                self.transition(job, f"lease lost: {sqlstate(e)} {e}")
            else:
                self.fail(job, f"{sqlstate(e)}: {e}", retry_in=1.0)
        except Exception as e:                   # a bug in a handler: retry it, bounded
            self.fail(job, f"{type(e).__name__}: {e}", retry_in=1.0)

    def complete(self, job, result):
        self.conn.execute("SELECT rungate.complete(%s, %s, %s)",
                          (job.run_id, job.lease_token, Jsonb(result) if result is not None else None))

    def fail(self, job, error, retry_in=None):
        self.drop(job)
        retryable = retry_in is not None
        try:
            status = self.conn.execute(
                "SELECT status FROM rungate.fail(%s, %s, %s, %s, make_interval(secs => %s))",
                (job.run_id, job.lease_token, error, retryable, retry_in)).fetchone()[0]
        except psycopg.Error as e:
            self.transition(job, f"lease lost: {sqlstate(e)} {e}")
            return
        if status == "queued":
            what = "released" if error == "worker shutting down" else f"retry in {retry_in:g}s"
            self.transition(job, f"{what}: {error}")
        else:
            self.transition(job, f"failed: {error}")


def main(argv=None):
    ap = argparse.ArgumentParser(description="rungate worker (psycopg 3)")
    ap.add_argument("--worker", default=f"py-{socket.gethostname()}-{os.getpid()}",
                    help="worker name recorded on runs and in the audit log")
    ap.add_argument("--ops", help="comma-separated operations to claim (default: the handlers')")
    ap.add_argument("--batch", type=int, default=5, help="runs per claim (default 5)")
    ap.add_argument("--poll", type=float, default=5.0,
                    help="polling fallback, seconds between claims when no notification comes (default 5)")
    ap.add_argument("--once", action="store_true", help="one claim, handle what it returned, exit")
    ap.add_argument("--max-runs", type=int, help="exit after handling N runs")
    ap.add_argument("--exit-when-idle", type=float, metavar="SECONDS",
                    help="exit once there has been nothing to do for SECONDS (0: at the first empty claim)")
    ap.add_argument("--grace", type=float, default=30.0,
                    help="after SIGTERM, seconds during which held runs are still begun (default 30)")
    args = ap.parse_args(argv)
    if args.batch < 1 or (args.max_runs is not None and args.max_runs < 1):
        ap.error("--batch and --max-runs must be positive")
    try:
        Worker(args).run()
    except psycopg.OperationalError as e:
        log(args.worker, f"connection error: {e}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
