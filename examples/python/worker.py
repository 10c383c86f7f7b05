#!/usr/bin/env python3
"""A rungate worker in Python, with psycopg 3 (Debian: python3-psycopg).

    PGDATABASE=app PGUSER=app_worker python3 examples/python/worker.py --exit-when-idle 5

The worker's whole protocol is six SQL functions (README, "The worker
protocol"):

  claim      takes due runs in a batch; rungate decides each one again now and
             blocks, itself, the ones that are no longer legitimate: they are
             never handed to a worker. An empty claim may only mean that it
             stopped at rungate.claim_block_limit: it then notifies
             rungate_queued, and the worker calls again.
  heartbeat  keeps the lease of every run the worker holds (a thread, its own
             connection), so a long run is not reaped and handed to another.
             rungate decides again there: null means the run's authority was
             revoked and the run is blocked now; the job is stopped.
  recheck    for write families (operation_types.writes), decided again right
             before the side effects, in the transaction that makes them and
             completes the run. Denied: the run is now blocked; the worker
             commits that and does nothing else.
  complete / fail
             the outcome; a retryable failure goes back to the queue and is
             decided afresh when it is claimed again.
  release    the job says "later" (raises Later, e.g. the provider throttled):
             the run goes back to the queue, due after the delay, without
             spending an attempt.

A run can be taken from the worker while its job works: an operator cancels it
(rungate_cancelled names it: the same thread LISTENs), a heartbeat returns
null, or a call raises RG409 (the lease is no longer this worker's: cancelled,
blocked, expired and reaped). The job is then stopped at its next
job.sleep()/job.checkpoint() and nothing more is reported for it: its
complete or fail would raise RG409, and its side effects would be refused by
the fence (rungate.guard_writes).

It waits on LISTEN rungate_queued, and polls as a fallback (a run that becomes
due later, such as a delayed retry, is only found by polling). On SIGTERM (or
SIGINT) it stops claiming, finishes the run in hand, begins the others it holds
while --grace lasts and releases the rest (another worker takes them at once,
no attempt spent). One log line per transition.

Connection: the standard libpq environment (PGHOST, PGPORT, PGUSER,
PGDATABASE, PGPASSWORD, ...). The role needs no table privilege on rungate:
USAGE on the schema and EXECUTE on the six functions (examples/app.sql),
plus whatever the handlers write in the application.
"""

import argparse
import json
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


class Later(Exception):
    """Not now (the provider said "later"): the run is released, due again in
    retry_in seconds, and no attempt is spent."""

    def __init__(self, message, retry_in=1.0):
        super().__init__(message)
        self.retry_in = retry_in


class Stopped(Exception):
    """The run was taken from this worker while its job worked (cancelled,
    blocked at a heartbeat, lease lost): stop and report nothing."""


def simulate(job):
    """Demo knobs in the payload, so the examples can be driven by tests:
    sleep (seconds of work), fail_attempts (fail retryably while attempt <= n),
    fail = "permanent" (fail for good), later_attempts (say "later" while
    attempt <= n)."""
    p = job.payload
    if p.get("fail") == "permanent":
        raise Permanent("permanent error requested by the payload")
    if job.attempt <= int(p.get("fail_attempts", 0)):
        raise Retryable(f"transient error on attempt {job.attempt}")
    if job.attempt <= int(p.get("later_attempts", 0)):
        raise Later("the provider asked to come back later", retry_in=1.0)
    if p.get("sleep"):
        job.sleep(float(p["sleep"]))     # the heartbeat thread keeps the lease


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
        self.stop_reason = None
        self._stop = threading.Event()

    # ---- for handlers: where a long job lets itself be stopped
    def checkpoint(self):
        """Raise Stopped if the run was taken from this worker."""
        if self._stop.is_set():
            raise Stopped(self.stop_reason)

    def sleep(self, seconds):
        """Wait, or raise Stopped as soon as the run is taken from this worker."""
        if self._stop.wait(seconds):
            raise Stopped(self.stop_reason)

    # ---- for the worker
    def stop(self, reason):
        if not self._stop.is_set():
            self.stop_reason = reason
            self._stop.set()


def log(worker, msg):
    now = time.time()
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now * 1000) % 1000:03d}Z"
    print(f"{stamp} {worker} {msg}", flush=True)


def sqlstate(exc):
    return getattr(exc, "sqlstate", None)


class Heartbeats(threading.Thread):
    """Heartbeats every held run at a third of its lease, and listens on
    rungate_cancelled, on its own connection; stops the jobs whose runs are
    taken from the worker."""

    def __init__(self, worker):
        super().__init__(daemon=True)
        self.worker = worker
        self.done = threading.Event()

    def on_notify(self, channel, payload):
        if channel == "rungate_cancelled":
            run_id = int(json.loads(payload)["run_id"])
            self.worker.take_away(run_id, "cancelled by an operator (rungate_cancelled)")

    def run(self):
        try:
            conn = psycopg.connect("", autocommit=True,
                                   application_name=f"{self.worker.name} heartbeat")
        except psycopg.Error as e:
            log(self.worker.name, f"heartbeat connection failed: {e}")
            return
        with conn:
            # notifications that arrive during a heartbeat come to the handler
            conn.add_notify_handler(lambda n: self.on_notify(n.channel, n.payload))
            conn.execute("LISTEN rungate_cancelled")
            pgconn = conn.pgconn
            while not self.done.is_set():
                if select.select([conn.fileno()], [], [], 0.2)[0]:
                    pgconn.consume_input()
                # also what libpq read along with the last heartbeat's result
                while (n := pgconn.notifies()) is not None:
                    self.on_notify(n.relname.decode(), n.extra.decode())
                now = time.monotonic()
                for job, due in self.worker.due_heartbeats(now):
                    try:
                        until = conn.execute("SELECT rungate.heartbeat(%s, %s)",
                                             (job.run_id, job.lease_token)).fetchone()[0]
                    except psycopg.Error as e:
                        if sqlstate(e) in ("RG409", "RG404"):
                            # no longer ours: cancelled, blocked, expired and reaped
                            self.worker.take_away(job.run_id, f"lease lost at heartbeat: {sqlstate(e)} {e}")
                        elif self.worker.still_holds(job):
                            log(self.worker.name, f"run {job.run_id} {job.operation} "
                                f"attempt {job.attempt}: heartbeat refused: {sqlstate(e)} {e}")
                        continue
                    if until is None:
                        # rungate decided again and denied: the run is blocked now
                        self.worker.take_away(job.run_id, "blocked by heartbeat: its authority was revoked")
                    else:
                        self.worker.beaten(job, now)


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

    def take_away(self, run_id, reason):
        """The run is no longer this worker's: log it once, stop its job."""
        with self.lock:
            entry = self.held.pop(run_id, None)
        if entry is not None:
            job = entry[0]
            self.transition(job, f"{reason}; stopping its job")
            job.stop(reason)

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
                    self.release(rest, "worker shutting down", 0.0)
                break
            self.process(job)
        self.handled += len(jobs)

    def process(self, job):
        handler = HANDLERS.get(job.operation)
        try:
            job.checkpoint()                     # cancelled while it waited in the batch
            if handler is None:
                raise Permanent(f"no handler for {job.operation}")
            result = handler.perform(job)
            self.drop(job)                       # no more heartbeats: we finish it now
            job.checkpoint()
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
        except Stopped as e:
            self.transition(job, f"stopped: {e}")
        except Later as e:
            self.release(job, str(e), e.retry_in)
        except Retryable as e:
            self.fail(job, str(e), retry_in=e.retry_in)
        except Permanent as e:
            self.fail(job, str(e))
        except psycopg.Error as e:
            if sqlstate(e) in ("RG409", "RG404"):
                # no longer ours (cancelled, blocked, expired): stop, report nothing
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
            self.transition(job, f"retry in {retry_in:g}s: {error}")
        else:
            self.transition(job, f"failed: {error}")

    def release(self, job, reason, retry_in):
        """Back to the queue, due in retry_in seconds, no attempt spent."""
        self.drop(job)
        try:
            self.conn.execute(
                "SELECT rungate.release(%s, %s, now() + make_interval(secs => %s))",
                (job.run_id, job.lease_token, retry_in))
        except psycopg.Error as e:
            self.transition(job, f"lease lost: {sqlstate(e)} {e}")
            return
        due = f", due in {retry_in:g}s" if retry_in else ""
        self.transition(job, f"released{due}: {reason}")


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
