#!/usr/bin/env python3
"""test/stress/chaos.py: the chaos suite of `make stress` (test/stress/run.sh).

    python3 test/stress/chaos.py --dbname rungate_chaos [--runs 20000] [--workers 8]

Against a database prepared with test/stress/chaos_setup.sql, on a server
reached through the libpq environment (PGHOST, PGPORT, PGUSER: a superuser).

Threads, each with its own connection:
  dispatcher  enqueues the runs (10 per transaction, a savepoint each) while
              everything below goes on (the workers start once a quarter of
              the runs is queued, so claims meet old runs as well as fresh
              ones); an enqueue refused with RG400 (its tenant was just moved
              to another workspace) is recorded and tried again later.
  workers     (8, as the role rungate_stress_worker) claim 1..10 runs at a
              time; recheck every run of a write type and 1 in 10 of the
              others; heartbeat sometimes; complete 75 %, fail retryably 15 %
              (retry_in none, 0 or 20 ms), fail for good 10 %; and 3 % of
              the time "die" holding the lease: the run is left running.
  revoker     every 0.2-2 ms, one change of authority in a transaction of its
              own that also logs it into stress.revocations: a revoke
              (disable an actor, delete or demote a workspace or tenant
              membership, remove a capability from a role, suspend a
              workspace, make a tenant non-operable, move a tenant to another
              workspace, unsatisfy or delete a prerequisite) or, 2-40 ms
              later (1-8 ms for the broad ones: a role's capability, a
              whole workspace), the restore of an earlier one; at most 10
              revokes are open at once, never two on the same row.
  reaper      every 100 ms, force-expires the leases of the dead runs
              (UPDATE rungate.runs SET lease_expires_at = now() - 1 s) and
              calls rungate.reap_expired(); then the dead worker comes back
              and tries to complete its run with its stale token: RG409.

Every transaction that decides (claim, recheck, enqueue) records in
stress.tx, in that same transaction, the snapshot of its deciding statement
(snap_begin; for an enqueue, of a statement before it) and one taken after
it (snap_end). With the revocations' txids
this makes the checks exact, with no clock involved: a revocation visible in
snap_begin had committed before the decision began, one invisible in
snap_end was not seen by it.

Phases: chaos (until everything is dispatched and nothing is queued), then
the revoker restores what is open and stops, nobody dies any more, and the
queue drains (dead runs reaped, retries claimed) until every run is
terminal. Then the invariants, from the audit log (see CHECKS). Exit status
0 when every invariant holds, 1 otherwise.

--self-test sabotages the revoker (it logs disabling actors it never
disables and suspends tenants without logging it): the run must then fail
checks (a) and (c), and only those (run.sh's chaos-selftest suite).
"""

import argparse
import collections
import os
import random
import sys
import threading
import time
import traceback

import psycopg

# operation -> (scope, system allowed, writes); the fixture's types
OPS = {
    "inventory.sync": ("tenant", True, False),
    "provider.connection.verify": ("tenant", True, False),
    "restore.execute": ("tenant", False, True),
    "reports.export": ("workspace", True, False),
}
OP_WEIGHTS = [("inventory.sync", 35), ("provider.connection.verify", 25),
              ("restore.execute", 20), ("reports.export", 20)]
# roles of the model that grant each operation's capability (seed.sql)
GRANTING = {
    "inventory.sync": ("owner", "operator"),
    "provider.connection.verify": ("owner", "operator"),
    "restore.execute": ("owner",),
    "reports.export": ("owner",),
}
ROLE_CAPS = [("owner", "provider.manage"), ("owner", "inventory.sync"),
             ("owner", "restore.execute"), ("owner", "reports.run"),
             ("operator", "provider.manage"), ("operator", "inventory.sync")]

# kind -> weight in the revoker's choice, and how long a revoke stays (ms);
# the broad ones (a role's capability, a whole workspace) briefly
KINDS = {
    "actor_status": (8, (2, 40)),
    "ws_member": (6, (2, 40)),
    "ws_role": (6, (2, 40)),
    "tenant_member": (8, (2, 40)),
    "tenant_role": (8, (2, 40)),
    "role_cap": (3, (1, 8)),
    "ws_status": (2, (1, 8)),
    "tenant_status": (10, (2, 40)),
    "tenant_move": (5, (2, 40)),
    "prereq": (10, (2, 40)),
}
MAX_OPEN = 10          # revocations open at once, at most


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


class Shared:
    """State shared by the threads (the GIL makes these updates safe enough;
    counters take the lock)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.stats = collections.Counter()
        self.errors = []                 # unexpected exceptions: (thread, text)
        self.enqueued = {}               # run id -> status returned by enqueue
        self.acked = {}                  # run id -> status returned to a worker
        self.dead = collections.deque()  # (run id, token, attempt, monotonic)
        self.zombie_bad = []             # stale token accepted or other error
        self.dispatch_done = threading.Event()
        self.stop_revoker = threading.Event()
        self.revoker_done = threading.Event()
        self.stop_workers = threading.Event()
        self.stop_reaper = threading.Event()
        self.chaos = True                # workers may die

    def count(self, key, n=1):
        with self.lock:
            self.stats[key] += n

    def error(self, who, exc):
        with self.lock:
            self.errors.append((who, "".join(
                traceback.format_exception_only(type(exc), exc)).strip()))


def connect(args, user=None, autocommit=True):
    kw = {"dbname": args.dbname, "autocommit": autocommit}
    if user:
        kw["user"] = user
    return psycopg.connect(**kw)


# ---------------------------------------------------------------------------
# the model and the runs to dispatch
# ---------------------------------------------------------------------------

class Model:
    def __init__(self, conn):
        cur = conn.cursor()
        self.ws_members = cur.execute(
            "SELECT workspace_id, actor_id, role FROM stress.baseline_ws_members"
            " ORDER BY 1, 2").fetchall()
        self.tenant_members = cur.execute(
            "SELECT tenant_id, actor_id, role FROM stress.baseline_tenant_members"
            " ORDER BY 1, 2").fetchall()
        self.tenants = cur.execute(
            "SELECT id, workspace_id FROM stress.baseline_tenants ORDER BY 1").fetchall()
        self.workspaces = sorted({w for _, w in self.tenants})
        self.actors = sorted({a for _, a, _ in self.ws_members})
        self.ws_role = {(w, a): r for w, a, r in self.ws_members}
        self.tenant_role = {(t, a): r for t, a, r in self.tenant_members}
        self.tenant_ws = dict(self.tenants)

    def runs(self, n, rnd):
        ops = [o for o, w in OP_WEIGHTS for _ in range(w)]
        specs = []
        for _ in range(n):
            op = rnd.choice(ops)
            scope, system, _ = OPS[op]
            if scope == "tenant":
                tenant, ws = rnd.choice(self.tenants)
                members = [a for (t, a), r in self.tenant_role.items()
                           if t == tenant and r in GRANTING[op]]
            else:
                tenant, ws = None, rnd.choice(self.workspaces)
                members = [a for (w, a), r in self.ws_role.items()
                           if w == ws and r in GRANTING[op]]
            actor = None if (system and rnd.random() < 0.15) else rnd.choice(members)
            specs.append((op, ws, tenant, actor))
        return specs


# ---------------------------------------------------------------------------
# dispatcher
# ---------------------------------------------------------------------------

def dispatcher(args, sh, specs):
    try:
        conn = connect(args)
        cur = conn.cursor()
        pending = collections.deque(specs)
        while pending:
            batch = [pending.popleft() for _ in range(min(10, len(pending)))]
            with conn.transaction():
                cur.execute(
                    "INSERT INTO stress.tx (txid, kind, worker, snap_begin)"
                    " VALUES (txid_current(), 'enqueue', 'dispatcher', txid_current_snapshot())")
                for spec in batch:
                    op, ws, tenant, actor = spec
                    try:
                        with conn.transaction():
                            cur.execute(
                                "SELECT id, status FROM rungate.enqueue(%s, %s, %s, %s,"
                                " jsonb_build_object('stress', true))", spec)
                            run_id, status = cur.fetchone()
                        sh.enqueued[run_id] = status
                        sh.count("enqueued")
                        sh.count(f"enqueued {status}")
                    except psycopg.Error as e:
                        if e.sqlstate != "RG400":
                            raise
                        cur.execute(
                            "INSERT INTO stress.rejections VALUES"
                            " (txid_current(), %s, %s, %s, %s, %s)",
                            (ws, tenant, op, e.sqlstate, e.diag.message_primary))
                        sh.count("enqueue rejected (RG400)")
                        pending.append(spec)
                cur.execute("UPDATE stress.tx SET snap_end = txid_current_snapshot()"
                            " WHERE txid = txid_current()")
    except Exception as e:      # noqa: BLE001 (reported, fails the suite)
        sh.error("dispatcher", e)
    finally:
        sh.dispatch_done.set()


# ---------------------------------------------------------------------------
# workers
# ---------------------------------------------------------------------------

CLAIM_SQL = (
    "WITH l AS (INSERT INTO stress.tx (txid, kind, worker, snap_begin)"
    "           VALUES (txid_current(), 'claim', %(w)s, txid_current_snapshot()))"
    " SELECT run_id, lease_token, attempt, operation"
    "   FROM rungate.claim(%(w)s, NULL, %(n)s)")
RECHECK_SQL = (
    "WITH l AS (INSERT INTO stress.tx (txid, kind, worker, snap_begin)"
    "           VALUES (txid_current(), 'recheck', %(w)s, txid_current_snapshot()))"
    " SELECT allowed, reason_code FROM rungate.recheck(%(id)s, %(tok)s)")
SNAP_END_SQL = ("UPDATE stress.tx SET snap_end = txid_current_snapshot()"
                " WHERE txid = txid_current()")


def worker(args, sh, idx):
    name = f"w{idx}"
    rnd = random.Random(args.seed * 100 + idx)
    try:
        conn = connect(args, user="rungate_stress_worker")
    except Exception as e:      # noqa: BLE001
        sh.error(name, e)
        return
    cur = conn.cursor()
    while not sh.stop_workers.is_set():
        try:
            with conn.transaction():
                rows = cur.execute(CLAIM_SQL, {"w": name, "n": rnd.randint(1, 10)}).fetchall()
                cur.execute(SNAP_END_SQL)
            sh.count("claims")
            if not rows:
                sh.count("empty claims")
                time.sleep(rnd.uniform(0.003, 0.02))
                continue
            sh.count("runs started", len(rows))
            for run_id, token, attempt, op in rows:
                handle(sh, cur, conn, rnd, name, run_id, token, attempt, op)
        except Exception as e:  # noqa: BLE001
            sh.error(name, e)
            time.sleep(0.05)
    conn.close()


def handle(sh, cur, conn, rnd, name, run_id, token, attempt, op):
    if sh.chaos and rnd.random() < 0.03:
        sh.dead.append((run_id, token, attempt, time.monotonic()))
        sh.count("workers died holding a lease")
        return
    writes = OPS[op][2]
    if writes or rnd.random() < 0.1:
        with conn.transaction():
            allowed, code = cur.execute(RECHECK_SQL, {"w": name, "id": run_id, "tok": token}).fetchone()
            cur.execute("INSERT INTO stress.rechecks VALUES (%s, %s, txid_current(), %s, %s)",
                        (run_id, attempt, allowed, code))
            cur.execute(SNAP_END_SQL)
        sh.count("rechecks")
        if not allowed:
            sh.acked[run_id] = "blocked"
            sh.count("rechecks denied")
            return
    if rnd.random() < 0.1:
        cur.execute("SELECT rungate.heartbeat(%s, %s)", (run_id, token))
        sh.count("heartbeats")
    r = rnd.random()
    if r < 0.75:
        status = cur.execute("SELECT status FROM rungate.complete(%s, %s, %s)",
                             (run_id, token, '{"ok": true}')).fetchone()[0]
        sh.count("completed")
    elif r < 0.90:
        retry_in = rnd.choice([None, "0", "20 milliseconds"])
        status = cur.execute(
            "SELECT status FROM rungate.fail(%s, %s, 'transient', true, %s::interval)",
            (run_id, token, retry_in)).fetchone()[0]
        sh.count("failed retryable")
    else:
        status = cur.execute("SELECT status FROM rungate.fail(%s, %s, 'permanent')",
                             (run_id, token)).fetchone()[0]
        sh.count("failed permanent")
    sh.acked[run_id] = status


# ---------------------------------------------------------------------------
# reaper: the harness expires the dead workers' leases
# ---------------------------------------------------------------------------

def reaper(args, sh):
    try:
        conn = connect(args)
        cur = conn.cursor()
        while True:
            stopping = sh.stop_reaper.is_set()
            now = time.monotonic()
            batch = []
            while sh.dead and (stopping or now - sh.dead[0][3] > 0.03):
                batch.append(sh.dead.popleft())
            if batch:
                ids = [b[0] for b in batch]
                with conn.transaction():
                    cur.execute("UPDATE rungate.runs SET lease_expires_at = now() - interval '1 s'"
                                " WHERE id = ANY(%s) AND status = 'running'", (ids,))
                    expired = cur.rowcount
                reaped = cur.execute("SELECT rungate.reap_expired()").fetchone()[0]
                sh.count("leases force-expired", expired)
                sh.count("reaped", reaped)
                if expired != len(ids):
                    sh.zombie_bad.append(f"{len(ids) - expired} dead run(s) of {ids} were no longer running")
                # the dead workers come back with their stale tokens
                for run_id, token, attempt, _ in batch:
                    try:
                        cur.execute("SELECT rungate.complete(%s, %s)", (run_id, token))
                        sh.zombie_bad.append(f"run {run_id}: a stale token of attempt {attempt} completed it")
                    except psycopg.Error as e:
                        if e.sqlstate == "RG409":
                            sh.count("stale completions refused (RG409)")
                        else:
                            sh.zombie_bad.append(f"run {run_id}: stale completion raised {e.sqlstate}: {e}")
            else:
                # a run the reaper passed over (SKIP LOCKED: another
                # transaction held it for a moment) is reaped on a later call
                sh.count("reaped", cur.execute("SELECT rungate.reap_expired()").fetchone()[0])
                if stopping:
                    break
            time.sleep(0.1)
    except Exception as e:      # noqa: BLE001
        sh.error("reaper", e)


# ---------------------------------------------------------------------------
# revoker
# ---------------------------------------------------------------------------

class Revoker:
    def __init__(self, args, sh, model):
        self.args, self.sh, self.m = args, sh, model
        self.rnd = random.Random(args.seed * 7 + 1)
        self.open = {}      # target -> (pair, kind, detail, until)
        self.pair = 0
        self.kinds = [k for k, (w, _) in KINDS.items() for _ in range(w)]

    def targets(self, kind):
        m = self.m
        if kind == "actor_status":
            return [("actor", a) for a in m.actors]
        if kind in ("ws_member", "ws_role"):
            return [("ws_member", w, a) for w, a, _ in m.ws_members]
        if kind in ("tenant_member", "tenant_role"):
            return [("tenant_member", t, a) for t, a, _ in m.tenant_members]
        if kind == "role_cap":
            return [("role_cap", r, c) for r, c in ROLE_CAPS]
        if kind == "ws_status":
            return [("ws", w) for w in m.workspaces]
        if kind == "tenant_status":
            return [("tenant_status", t) for t, _ in m.tenants]
        if kind == "tenant_move":
            return [("tenant_move", t) for t, _ in m.tenants]
        if kind == "prereq":
            return [("prereq", t, p) for t, _ in m.tenants
                    for p in ("provider_connection", "admin_consent")]
        raise ValueError(kind)

    def change(self, cur, action, kind, target, pair, detail):
        """One change and its log row, in the caller's transaction."""
        m = self.m
        ws = tenant = actor = role = cap = prereq = None
        # --self-test: a revoker that lies (logs disabling actors it never
        # disables) and hides (suspends tenants without a log row); the
        # checks (a) and (c) must catch it
        lie = self.args.self_test and kind == "actor_status"
        hide = self.args.self_test and kind == "tenant_status"
        if lie:
            actor = target[1]
            cur.execute("SELECT 1")
        elif kind == "actor_status":
            actor = target[1]
            cur.execute("UPDATE rungate.actors SET status = %s WHERE id = %s",
                        ("disabled" if action == "revoke" else "active", actor))
        elif kind == "ws_member":
            ws, actor = target[1:]
            if action == "revoke":
                cur.execute("DELETE FROM rungate.workspace_members"
                            " WHERE workspace_id = %s AND actor_id = %s", (ws, actor))
            else:
                cur.execute("INSERT INTO rungate.workspace_members VALUES (%s, %s, %s)",
                            (ws, actor, m.ws_role[(ws, actor)]))
        elif kind == "ws_role":
            ws, actor = target[1:]
            cur.execute("UPDATE rungate.workspace_members SET role = %s"
                        " WHERE workspace_id = %s AND actor_id = %s",
                        ("readonly" if action == "revoke" else m.ws_role[(ws, actor)], ws, actor))
        elif kind == "tenant_member":
            tenant, actor = target[1:]
            if action == "revoke":
                cur.execute("DELETE FROM rungate.tenant_members"
                            " WHERE tenant_id = %s AND actor_id = %s", (tenant, actor))
            else:
                cur.execute("INSERT INTO rungate.tenant_members VALUES (%s, %s, %s)",
                            (tenant, actor, m.tenant_role[(tenant, actor)]))
        elif kind == "tenant_role":
            tenant, actor = target[1:]
            cur.execute("UPDATE rungate.tenant_members SET role = %s"
                        " WHERE tenant_id = %s AND actor_id = %s",
                        ("readonly" if action == "revoke" else m.tenant_role[(tenant, actor)],
                         tenant, actor))
        elif kind == "role_cap":
            role, cap = target[1:]
            if action == "revoke":
                cur.execute("DELETE FROM rungate.role_capabilities"
                            " WHERE role = %s AND capability = %s", (role, cap))
            else:
                cur.execute("INSERT INTO rungate.role_capabilities VALUES (%s, %s)", (role, cap))
        elif kind == "ws_status":
            ws = target[1]
            cur.execute("UPDATE rungate.workspaces SET status = %s WHERE id = %s",
                        (detail if action == "revoke" else "active", ws))
        elif kind == "tenant_status":
            tenant = target[1]
            cur.execute("UPDATE rungate.tenants SET status = %s WHERE id = %s",
                        (detail if action == "revoke" else "active", tenant))
        elif kind == "tenant_move":
            tenant = target[1]
            cur.execute("UPDATE rungate.tenants SET workspace_id = %s WHERE id = %s",
                        (int(detail) if action == "revoke" else m.tenant_ws[tenant], tenant))
        elif kind == "prereq":
            tenant, prereq = target[1:]
            if detail == "deleted":
                if action == "revoke":
                    cur.execute("DELETE FROM rungate.tenant_prerequisites"
                                " WHERE tenant_id = %s AND name = %s", (tenant, prereq))
                else:
                    cur.execute("INSERT INTO rungate.tenant_prerequisites VALUES (%s, %s, true)",
                                (tenant, prereq))
            else:
                cur.execute("UPDATE rungate.tenant_prerequisites SET satisfied = %s"
                            " WHERE tenant_id = %s AND name = %s",
                            (action == "restore", tenant, prereq))
        if cur.rowcount != 1:
            raise RuntimeError(f"{action} {kind} {target}: {cur.rowcount} rows changed")
        if kind == "tenant_move" and action == "revoke":
            ws = int(detail)
        if hide:
            return
        cur.execute(
            "INSERT INTO stress.revocations (pair, action, kind, workspace_id, tenant_id,"
            " actor_id, role, capability, prerequisite, detail)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (pair, action, kind, ws, tenant, actor, role, cap, prereq, detail))

    def revoke_one(self, cur):
        rnd = self.rnd
        kind = rnd.choice(self.kinds)
        free = [t for t in self.targets(kind) if t not in self.open]
        if not free:
            return
        target = rnd.choice(free)
        detail = None
        if kind == "ws_status":
            detail = rnd.choice(["suspended", "archived"])
        elif kind == "tenant_status":
            detail = rnd.choice(["onboarding", "suspended", "disconnected", "archived"])
        elif kind == "tenant_move":
            home = self.m.tenant_ws[target[1]]
            detail = str(rnd.choice([w for w in self.m.workspaces if w != home]))
        elif kind == "prereq":
            detail = rnd.choice(["unsatisfied", "unsatisfied", "deleted"])
        self.pair += 1
        lo, hi = KINDS[kind][1]
        with cur.connection.transaction():
            self.change(cur, "revoke", kind, target, self.pair, detail)
        self.open[target] = (self.pair, kind, detail, time.monotonic() + rnd.uniform(lo, hi) / 1000)
        self.sh.count("revocations")
        self.sh.count(f"revocations {kind}")

    def restore(self, cur, target):
        pair, kind, detail, _ = self.open.pop(target)
        with cur.connection.transaction():
            self.change(cur, "restore", kind, target, pair, detail)
        self.sh.count("restores")

    def run(self):
        try:
            conn = connect(self.args)
            cur = conn.cursor()
            while not self.sh.stop_revoker.is_set():
                now = time.monotonic()
                due = [t for t, v in self.open.items() if v[3] <= now]
                if due:
                    self.restore(cur, min(due, key=lambda t: self.open[t][3]))
                elif len(self.open) < MAX_OPEN:
                    self.revoke_one(cur)
                time.sleep(self.rnd.uniform(0.0002, 0.002))
            for target in sorted(self.open, key=lambda t: self.open[t][0]):
                self.restore(cur, target)
        except Exception as e:  # noqa: BLE001
            self.sh.error("revoker", e)
        finally:
            self.sh.revoker_done.set()


# ---------------------------------------------------------------------------
# invariants
# ---------------------------------------------------------------------------

PREPARE_SQL = """
-- every revoke with its restore (null: never restored)
DROP TABLE IF EXISTS stress.pair;
CREATE TABLE stress.pair AS
SELECT v.pair, v.kind, v.workspace_id, v.tenant_id, v.actor_id, v.role, v.capability,
       v.prerequisite, v.detail, v.txid AS revoke_txid, r.txid AS restore_txid,
       v.at AS revoke_at, r.at AS restore_at,
       int8range(v.txid, coalesce(r.txid, 9223372036854775806), '[]') AS span
  FROM stress.revocations v
  LEFT JOIN stress.revocations r ON r.pair = v.pair AND r.action = 'restore'
 WHERE v.action = 'revoke';
CREATE INDEX ON stress.pair USING gist (span);
ANALYZE stress.pair;

-- what each run relied on: its operation's contract and, for an actor, the
-- role of the membership its capability comes from (at baseline)
DROP TABLE IF EXISTS stress.run_facts;
CREATE TABLE stress.run_facts AS
SELECT r.id AS run_id, r.workspace_id, r.tenant_id, r.initiator_id AS actor_id,
       r.operation, ot.capability, ot.scope, ot.prerequisites, ot.requires_operable_tenant,
       CASE WHEN ot.scope = 'tenant' THEN tm.role ELSE wm.role END AS base_role
  FROM rungate.runs r
  JOIN rungate.operation_types ot ON ot.name = r.operation
  LEFT JOIN stress.baseline_tenant_members tm
         ON tm.tenant_id = r.tenant_id AND tm.actor_id = r.initiator_id
  LEFT JOIN stress.baseline_ws_members wm
         ON wm.workspace_id = r.workspace_id AND wm.actor_id = r.initiator_id;
ALTER TABLE stress.run_facts ADD PRIMARY KEY (run_id);
ANALYZE stress.run_facts;

-- the reason code a revocation causes for a run (null: it does not touch it)
CREATE OR REPLACE FUNCTION stress.effect(p stress.pair, f stress.run_facts) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
SELECT CASE p.kind
  WHEN 'actor_status' THEN CASE WHEN f.actor_id = p.actor_id THEN 'actor_disabled' END
  WHEN 'ws_member' THEN CASE WHEN f.actor_id = p.actor_id AND f.workspace_id = p.workspace_id
                        THEN 'actor_not_in_workspace' END
  -- the workspace role gives the capability of workspace-scoped runs only
  WHEN 'ws_role' THEN CASE WHEN f.actor_id = p.actor_id AND f.workspace_id = p.workspace_id
                      AND f.scope = 'workspace' THEN 'capability_missing' END
  WHEN 'tenant_move' THEN CASE WHEN f.tenant_id = p.tenant_id AND f.scope = 'tenant'
                          THEN 'tenant_not_in_workspace' END
  WHEN 'tenant_member' THEN CASE WHEN f.actor_id = p.actor_id AND f.tenant_id = p.tenant_id
                            AND f.scope = 'tenant' THEN 'actor_not_in_tenant' END
  WHEN 'tenant_role' THEN CASE WHEN f.actor_id = p.actor_id AND f.tenant_id = p.tenant_id
                          AND f.scope = 'tenant' THEN 'capability_missing' END
  WHEN 'role_cap' THEN CASE WHEN f.actor_id IS NOT NULL AND f.base_role = p.role
                       AND f.capability = p.capability THEN 'capability_missing' END
  WHEN 'ws_status' THEN CASE WHEN f.workspace_id = p.workspace_id THEN 'workspace_not_operable' END
  WHEN 'tenant_status' THEN CASE WHEN f.tenant_id = p.tenant_id AND f.scope = 'tenant'
                            AND f.requires_operable_tenant THEN 'tenant_not_operable' END
  WHEN 'prereq' THEN CASE WHEN f.tenant_id = p.tenant_id AND f.scope = 'tenant'
                     AND p.prerequisite = ANY (f.prerequisites) THEN 'prerequisite_unmet' END
END $$;

-- the order of the checks (docs/guarantees.md#decision)
CREATE OR REPLACE FUNCTION stress.check_order(code text) RETURNS int
LANGUAGE sql IMMUTABLE AS $$
SELECT array_position('{system_authority_not_allowed,actor_disabled,actor_not_in_workspace,
  tenant_not_in_workspace,actor_not_in_tenant,capability_missing,workspace_not_operable,
  tenant_not_operable,prerequisite_unmet}'::text[], code) $$;

-- Revocations certainly in force for a whole decision of transaction x: the
-- revoke committed before the decision began (visible in snap_begin) and the
-- restore had not committed when it ended (invisible in snap_end).
CREATE OR REPLACE FUNCTION stress.in_force(x stress.tx) RETURNS SETOF stress.pair
LANGUAGE sql STABLE AS $$
SELECT p.* FROM stress.pair p
 WHERE p.span && int8range(least(txid_snapshot_xmin(x.snap_end), txid_snapshot_xmax(x.snap_begin)),
                           greatest(txid_snapshot_xmin(x.snap_end), txid_snapshot_xmax(x.snap_begin)), '[]')
   AND txid_visible_in_snapshot(p.revoke_txid, x.snap_begin)
   AND (p.restore_txid IS NULL OR NOT txid_visible_in_snapshot(p.restore_txid, x.snap_end)) $$;

-- Revocations possibly in force at some moment of the decision: the revoke
-- committed before the transaction's end (visible in snap_end) and the
-- restore had not committed when the decision began (invisible in snap_begin).
CREATE OR REPLACE FUNCTION stress.maybe_in_force(x stress.tx) RETURNS SETOF stress.pair
LANGUAGE sql STABLE AS $$
SELECT p.* FROM stress.pair p
 WHERE p.span && int8range(txid_snapshot_xmin(x.snap_begin), txid_snapshot_xmax(x.snap_end), '[]')
   AND txid_visible_in_snapshot(p.revoke_txid, x.snap_end)
   AND (p.restore_txid IS NULL OR NOT txid_visible_in_snapshot(p.restore_txid, x.snap_begin)) $$;

CREATE OR REPLACE FUNCTION stress.commit_ts(txid bigint) RETURNS timestamptz
LANGUAGE sql STABLE AS $$
SELECT CASE WHEN current_setting('track_commit_timestamp')::bool
            THEN pg_xact_commit_timestamp((txid % 4294967296)::text::xid) END $$;

-- the status a run has after each audit event, and the one it needs before
CREATE OR REPLACE FUNCTION stress.status_after(event text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
SELECT CASE event WHEN 'dispatched' THEN 'queued' WHEN 'dispatch_blocked' THEN 'blocked'
  WHEN 'started' THEN 'running' WHEN 'execution_blocked' THEN 'blocked'
  WHEN 'recheck_blocked' THEN 'blocked' WHEN 'retry_scheduled' THEN 'queued'
  WHEN 'lease_expired' THEN 'queued' ELSE event END $$;
CREATE OR REPLACE FUNCTION stress.status_before(event text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
SELECT CASE WHEN event IN ('dispatched', 'dispatch_blocked') THEN NULL
  WHEN event IN ('started', 'execution_blocked', 'cancelled') THEN 'queued'
  ELSE 'running' END $$;

DROP TABLE IF EXISTS stress.acked;
CREATE TABLE stress.acked (run_id bigint PRIMARY KEY, status text NOT NULL);
DROP TABLE IF EXISTS stress.enqueued;
CREATE TABLE stress.enqueued (run_id bigint PRIMARY KEY, status text NOT NULL);
"""

# (name, what it proves, SQL returning one row per violation)
CHECKS = [
    ("a. started after a revocation in force",
     "no run was started by a claim that began after a revocation of its authority "
     "had committed and while it was not yet restored (docs/guarantees.md#revocation-seen)",
     """
SELECT a.run_id, a.attempt, a.worker, p.kind, p.pair,
       concat_ws(' ', 'ws=' || p.workspace_id, 'tenant=' || p.tenant_id, 'actor=' || p.actor_id,
                 'role=' || p.role, 'cap=' || p.capability, 'prereq=' || p.prerequisite,
                 'detail=' || p.detail) AS target,
       stress.commit_ts(p.revoke_txid) AS revoke_committed, x.began AS claim_began,
       stress.commit_ts(p.restore_txid) AS restore_committed
  FROM rungate.audit_log a
  JOIN stress.tx x ON x.txid = a.txid
  JOIN stress.run_facts f ON f.run_id = a.run_id
  CROSS JOIN LATERAL stress.in_force(x) p
 WHERE a.event = 'started' AND stress.effect(p, f) IS NOT NULL
 ORDER BY a.run_id, a.attempt, p.pair"""),
    ("a. recheck allowed under a revocation in force",
     "a recheck that began after a revocation committed denied the run",
     """
SELECT k.run_id, k.attempt, p.kind, p.pair
  FROM stress.rechecks k
  JOIN stress.tx x ON x.txid = k.txid
  JOIN stress.run_facts f ON f.run_id = k.run_id
  CROSS JOIN LATERAL stress.in_force(x) p
 WHERE k.allowed AND stress.effect(p, f) IS NOT NULL
 ORDER BY 1, 2, 4"""),
    ("a. dispatched (allowed) under a revocation in force",
     "an enqueue that began after a revocation committed recorded the run blocked",
     """
SELECT a.run_id, p.kind, p.pair
  FROM rungate.audit_log a
  JOIN stress.tx x ON x.txid = a.txid
  JOIN stress.run_facts f ON f.run_id = a.run_id
  CROSS JOIN LATERAL stress.in_force(x) p
 WHERE a.event = 'dispatched' AND stress.effect(p, f) IS NOT NULL
 ORDER BY 1, 3"""),
    ("a. decisions the harness did not record",
     "every started, blocked or dispatched row comes from a transaction of the harness "
     "(so the checks above and below saw every decision)",
     """
SELECT a.run_id, a.event, a.txid FROM rungate.audit_log a
 WHERE a.event IN ('started', 'dispatched', 'dispatch_blocked', 'execution_blocked', 'recheck_blocked')
   AND NOT EXISTS (SELECT 1 FROM stress.tx x WHERE x.txid = a.txid AND x.snap_end IS NOT NULL)
 ORDER BY 1, 2"""),
    ("b. runs not terminal",
     "after reaping and draining every run is terminal (docs/guarantees.md#no-run-lost)",
     "SELECT id, status FROM rungate.runs WHERE status NOT IN "
     "('succeeded', 'partially_succeeded', 'failed', 'blocked', 'cancelled') ORDER BY id"),
    ("b. runs lost or unknown",
     "every run an enqueue returned exists, with the status it returned at first, "
     "and there is no other",
     """
SELECT coalesce(e.run_id, r.id) AS run_id, e.status AS enqueued_as, r.id IS NOT NULL AS exists,
       first.event
  FROM stress.enqueued e
  FULL JOIN rungate.runs r ON r.id = e.run_id
  LEFT JOIN LATERAL (SELECT l.event FROM rungate.audit_log l WHERE l.run_id = r.id
                      ORDER BY l.id LIMIT 1) first ON true
 WHERE e.run_id IS NULL OR r.id IS NULL
    OR stress.status_after(first.event) IS DISTINCT FROM e.status
 ORDER BY 1"""),
    ("b. status differs from the last audit event",
     "each run's status (and reason) is the one its last audit event says (docs/guarantees.md#atomic)",
     """
SELECT r.id, r.status, r.reason_code, l.event, l.reason_code AS audit_reason
  FROM rungate.runs r
  LEFT JOIN LATERAL (SELECT a.event, a.reason_code FROM rungate.audit_log a
                      WHERE a.run_id = r.id ORDER BY a.id DESC LIMIT 1) l ON true
 WHERE stress.status_after(l.event) IS DISTINCT FROM r.status
    OR (r.status = 'blocked' AND (r.reason_code IS NULL
                                  OR r.reason_code IS DISTINCT FROM l.reason_code))
 ORDER BY 1"""),
    ("b. audit trail breaks the lifecycle",
     "each audit event leaves the status the previous one entered (no transition skipped "
     "or invented)",
     """
SELECT run_id, id, prev_event, event FROM (
  SELECT a.run_id, a.id, a.event,
         lag(a.event) OVER (PARTITION BY a.run_id ORDER BY a.id) AS prev_event
    FROM rungate.audit_log a) s
 WHERE stress.status_before(event) IS DISTINCT FROM stress.status_after(prev_event)
 ORDER BY 1, 2"""),
    ("b. attempts started twice or out of order",
     "a run is started at most once per attempt, attempts 1, 2, ... in order, and its "
     "attempt counter is the number of starts (docs/guarantees.md#no-double-start)",
     """
SELECT r.id, r.attempt, s.starts, s.attempts
  FROM rungate.runs r
  LEFT JOIN LATERAL (SELECT count(*) AS starts,
                            array_agg(a.attempt ORDER BY a.id) AS attempts
                       FROM rungate.audit_log a
                      WHERE a.run_id = r.id AND a.event = 'started') s ON true
 WHERE s.starts <> r.attempt
    OR s.attempts IS DISTINCT FROM (SELECT array_agg(g ORDER BY g) FROM generate_series(1, r.attempt) g)
    OR r.attempt > r.max_attempts
 ORDER BY 1"""),
    ("b. acknowledged outcomes missing",
     "every outcome a worker was told (complete, fail, denied recheck) is the run's "
     "status, or an earlier step of it when the run went on (a retry)",
     """
SELECT k.run_id, k.status AS acked, r.status
  FROM stress.acked k JOIN rungate.runs r ON r.id = k.run_id
 WHERE k.status IN ('succeeded', 'failed', 'blocked') AND r.status <> k.status
 ORDER BY 1"""),
    ("b. notifications",
     "each terminal run with an initiator has exactly one notification, of its status; "
     "a system run none (docs/guarantees.md#notifications)",
     """
SELECT r.id, r.initiator_id, r.status, n.kinds
  FROM rungate.runs r
  LEFT JOIN LATERAL (SELECT array_agg(o.kind ORDER BY o.id) AS kinds
                       FROM rungate.notifications o WHERE o.run_id = r.id) n ON true
 WHERE (r.initiator_id IS NULL AND n.kinds IS NOT NULL)
    OR (r.initiator_id IS NOT NULL AND n.kinds IS DISTINCT FROM ARRAY['run_' || r.status])
 ORDER BY 1"""),
    ("c. blocked without a matching revocation",
     "every denial (dispatch, claim or recheck) names a check that a revocation possibly "
     "in force during that decision really failed",
     """
SELECT a.run_id, a.event, a.reason_code, a.txid
  FROM rungate.audit_log a
  JOIN stress.tx x ON x.txid = a.txid
  JOIN stress.run_facts f ON f.run_id = a.run_id
 WHERE a.event IN ('dispatch_blocked', 'execution_blocked', 'recheck_blocked')
   AND NOT EXISTS (SELECT 1 FROM stress.maybe_in_force(x) p
                    WHERE stress.effect(p, f) = a.reason_code)
 ORDER BY 1, 2"""),
    ("c. blocked for a later check than one certainly failing",
     "the reason code is the first failing check: no revocation in force for the whole "
     "decision fails an earlier check (docs/guarantees.md#decision)",
     """
SELECT a.run_id, a.event, a.reason_code, p.kind, stress.effect(p, f) AS earlier
  FROM rungate.audit_log a
  JOIN stress.tx x ON x.txid = a.txid
  JOIN stress.run_facts f ON f.run_id = a.run_id
  CROSS JOIN LATERAL stress.in_force(x) p
 WHERE a.event IN ('dispatch_blocked', 'execution_blocked', 'recheck_blocked')
   AND stress.check_order(stress.effect(p, f)) < stress.check_order(a.reason_code)
 ORDER BY 1, 2"""),
    ("c. recheck denials not recorded as blocked",
     "a denied recheck left the run blocked with its reason, in the same transaction",
     """
SELECT k.run_id, k.reason_code, a.event, a.reason_code
  FROM stress.rechecks k
  LEFT JOIN rungate.audit_log a ON a.txid = k.txid AND a.run_id = k.run_id
 WHERE NOT k.allowed
   AND (a.event IS DISTINCT FROM 'recheck_blocked' OR a.reason_code IS DISTINCT FROM k.reason_code)
 ORDER BY 1"""),
    ("c. RG400 without a tenant move",
     "an enqueue refused because its tenant is in another workspace met a real move",
     """
SELECT j.tenant_id, j.operation, j.message
  FROM stress.rejections j
  JOIN stress.tx x ON x.txid = j.txid
 WHERE NOT EXISTS (SELECT 1 FROM stress.maybe_in_force(x) p
                    WHERE p.kind = 'tenant_move' AND p.tenant_id = j.tenant_id)
 ORDER BY 1"""),
    ("harness: authority back to baseline",
     "after the restores the authority data equals the baseline (the log is complete)",
     """
(SELECT 'ws member ' || workspace_id || '/' || actor_id || ' ' || role FROM
  ((SELECT * FROM rungate.workspace_members WHERE workspace_id > 1000 EXCEPT SELECT * FROM stress.baseline_ws_members)
   UNION ALL (SELECT * FROM stress.baseline_ws_members EXCEPT SELECT * FROM rungate.workspace_members)) d)
UNION ALL
(SELECT 'tenant member ' || tenant_id || '/' || actor_id || ' ' || role FROM
  ((SELECT * FROM rungate.tenant_members WHERE tenant_id > 2000 EXCEPT SELECT * FROM stress.baseline_tenant_members)
   UNION ALL (SELECT * FROM stress.baseline_tenant_members EXCEPT SELECT * FROM rungate.tenant_members)) d)
UNION ALL
(SELECT 'tenant ' || id || ' ' || status || ' ws ' || workspace_id FROM
  ((SELECT * FROM rungate.tenants WHERE id > 2000 EXCEPT SELECT * FROM stress.baseline_tenants)) d)
UNION ALL
(SELECT 'actor ' || id || ' ' || status FROM rungate.actors WHERE id > 3000 AND status <> 'active')
UNION ALL
(SELECT 'workspace ' || id || ' ' || status FROM rungate.workspaces WHERE id > 1000 AND status <> 'active')
UNION ALL
(SELECT 'prerequisite ' || t.id || ' ' || u.pname FROM stress.baseline_tenants t
   CROSS JOIN unnest('{provider_connection,admin_consent}'::text[]) AS u(pname)
  WHERE NOT EXISTS (SELECT 1 FROM rungate.tenant_prerequisites p
                     WHERE p.tenant_id = t.id AND p.name = u.pname AND p.satisfied))
UNION ALL
(SELECT 'role capability ' || r || ' ' || c FROM (VALUES ('owner', 'provider.manage'),
   ('owner', 'inventory.sync'), ('owner', 'restore.execute'), ('owner', 'reports.run'),
   ('operator', 'provider.manage'), ('operator', 'inventory.sync')) v(r, c)
  WHERE NOT EXISTS (SELECT 1 FROM rungate.role_capabilities rc WHERE rc.role = r AND rc.capability = c))
ORDER BY 1"""),
]


def check(args, sh):
    conn = connect(args)
    cur = conn.cursor()
    cur.execute(PREPARE_SQL)
    with cur.copy("COPY stress.acked (run_id, status) FROM STDIN") as cp:
        for k, v in sh.acked.items():
            cp.write_row((k, v))
    with cur.copy("COPY stress.enqueued (run_id, status) FROM STDIN") as cp:
        for k, v in sh.enqueued.items():
            cp.write_row((k, v))
    cur.execute("ANALYZE stress.acked; ANALYZE stress.enqueued; ANALYZE stress.tx")

    print()
    print("== numbers")
    for row in cur.execute("""
        SELECT 'runs' AS what, count(*)::text FROM rungate.runs
        UNION ALL SELECT 'runs by status', string_agg(status || ' ' || n, ', ' ORDER BY status)
          FROM (SELECT status, count(*) n FROM rungate.runs GROUP BY 1) s
        UNION ALL SELECT 'blocked by reason', string_agg(reason_code || ' ' || n, ', ' ORDER BY reason_code)
          FROM (SELECT reason_code, count(*) n FROM rungate.runs WHERE status = 'blocked' GROUP BY 1) s
        UNION ALL SELECT 'audit rows by event', string_agg(event || ' ' || n, ', ' ORDER BY event)
          FROM (SELECT event, count(*) n FROM rungate.audit_log GROUP BY 1) s
        UNION ALL SELECT 'revocations (pairs)', count(*)::text FROM stress.pair
        UNION ALL SELECT 'revocations by kind', string_agg(kind || ' ' || n, ', ' ORDER BY kind)
          FROM (SELECT kind, count(*) n FROM stress.pair GROUP BY 1) s
        UNION ALL SELECT 'decisions recorded', string_agg(kind || ' ' || n, ', ' ORDER BY kind)
          FROM (SELECT kind, count(*) n FROM stress.tx GROUP BY 1) s
        UNION ALL SELECT 'starts racing a revocation (possibly, not certainly, in force)',
          count(*)::text FROM rungate.audit_log a JOIN stress.tx x ON x.txid = a.txid
          JOIN stress.run_facts f ON f.run_id = a.run_id
         WHERE a.event = 'started' AND EXISTS (SELECT 1 FROM stress.maybe_in_force(x) p
                                               WHERE stress.effect(p, f) IS NOT NULL)
        UNION ALL SELECT 'revocation commit to visible (commit timestamps)',
          CASE WHEN current_setting('track_commit_timestamp')::bool
               THEN 'track_commit_timestamp on: revocations committed from '
                    || (SELECT min(stress.commit_ts(txid))::text || ' to ' || max(stress.commit_ts(txid))::text
                          FROM stress.revocations)
               ELSE 'track_commit_timestamp off' END
        """):
        print(f"  {row[0]}: {row[1]}")

    print()
    print("== invariants")
    failed = 0
    for name, proves, sql in CHECKS:
        rows = cur.execute(sql).fetchall()
        ok = not rows
        failed += 0 if ok else 1
        print(f"  {'ok  ' if ok else 'FAIL'} {name}: {len(rows)} violation(s)")
        print(f"       ({proves})")
        if rows:
            cols = [d.name for d in cur.description]
            print("       " + " | ".join(cols))
            for row in rows[:20]:
                print("       " + " | ".join("" if v is None else str(v) for v in row))
            if len(rows) > 20:
                print(f"       ... and {len(rows) - 20} more")
    # the harness's own findings
    zombies = sh.stats["stale completions refused (RG409)"]
    ok = not sh.zombie_bad
    failed += 0 if ok else 1
    print(f"  {'ok  ' if ok else 'FAIL'} b. stale workers: {zombies} stale completions refused"
          f" with RG409, {len(sh.zombie_bad)} problem(s) (docs/guarantees.md#leases)")
    for z in sh.zombie_bad[:20]:
        print(f"       {z}")
    ok = not sh.errors
    failed += 0 if ok else 1
    print(f"  {'ok  ' if ok else 'FAIL'} harness: {len(sh.errors)} unexpected error(s)")
    for who, text in sh.errors[:20]:
        print(f"       {who}: {text}")
    conn.close()
    return failed


# ---------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dbname", required=True)
    ap.add_argument("--runs", type=int, default=int(os.environ.get("STRESS_RUNS", 20000)))
    ap.add_argument("--workers", type=int, default=int(os.environ.get("STRESS_WORKERS", 8)))
    ap.add_argument("--seed", type=int, default=int(os.environ.get("STRESS_SEED", 0)) or
                    int(time.time()) % 100000)
    ap.add_argument("--self-test", action="store_true",
                    help="sabotage the revoker (see Revoker.change): the run must fail")
    ap.add_argument("--max-seconds", type=int,
                    default=int(os.environ.get("STRESS_CHAOS_SECONDS", 600)),
                    help="give up (and fail) when chaos and drain take longer")
    args = ap.parse_args()
    t0 = time.monotonic()
    deadline = t0 + args.max_seconds
    log(f"chaos: {args.runs} runs, {args.workers} workers, seed {args.seed}"
        + (" (self-test: the revoker lies)" if args.self_test else ""))

    sh = Shared()
    setup = connect(args)
    model = Model(setup)
    specs = model.runs(args.runs, random.Random(args.seed))

    revoker = Revoker(args, sh, model)
    threads = {
        "revoker": threading.Thread(target=revoker.run, name="revoker"),
        "dispatcher": threading.Thread(target=dispatcher, args=(args, sh, specs), name="dispatcher"),
        "reaper": threading.Thread(target=reaper, args=(args, sh), name="reaper"),
    }
    workers = [threading.Thread(target=worker, args=(args, sh, i + 1), name=f"w{i + 1}")
               for i in range(args.workers)]
    for t in threads.values():
        t.start()
    # a backlog first, so that claims meet runs dispatched well before them
    while len(sh.enqueued) < args.runs // 4 and not sh.dispatch_done.is_set():
        time.sleep(0.05)
    for t in workers:
        t.start()

    def queue_state():
        return setup.execute("SELECT count(*) FILTER (WHERE status = 'queued'),"
                             " count(*) FILTER (WHERE status = 'running')"
                             " FROM rungate.runs").fetchone()

    # chaos: until everything is dispatched and nothing is left queued
    last = 0
    timed_out = False
    while True:
        time.sleep(0.25)
        queued, running = queue_state()
        if time.monotonic() - last > 10:
            last = time.monotonic()
            log(f"chaos: {len(sh.enqueued)} dispatched, {queued} queued, {running} running,"
                f" {sh.stats['revocations']} revocations")
        if sh.dispatch_done.is_set() and queued == 0:
            break
        if time.monotonic() > deadline:
            timed_out = True
            break
    chaos_secs = time.monotonic() - t0
    sh.stop_revoker.set()
    sh.revoker_done.wait(30)
    sh.chaos = False
    log(f"chaos over after {chaos_secs:.1f} s; revoker stopped; draining")

    # drain: dead runs reaped, retries claimed, until every run is terminal
    while not timed_out:
        queued, running = queue_state()
        if queued == 0 and running == 0 and not sh.dead:
            break
        if time.monotonic() > deadline:
            timed_out = True
            break
        time.sleep(0.25)
    sh.stop_workers.set()
    for t in workers:
        t.join(30)
    sh.stop_reaper.set()
    for t in threads.values():
        t.join(30)
    total_secs = time.monotonic() - t0
    log(f"drained after {total_secs:.1f} s")
    if timed_out:
        sh.errors.append(("main", f"not finished within {args.max_seconds} s (STRESS_CHAOS_SECONDS)"))
    setup.close()

    print()
    print("== harness counters")
    for k in sorted(sh.stats):
        print(f"  {k}: {sh.stats[k]}")
    print(f"  chaos phase: {chaos_secs:.1f} s; with the drain: {total_secs:.1f} s")

    failed = check(args, sh)
    print()
    print(f"chaos: {len(sh.enqueued)} runs, {sh.stats['revocations']} revocations"
          f" ({sh.stats['restores']} restores), {sh.stats['runs started']} starts,"
          f" {total_secs:.0f} s, seed {args.seed}: "
          + ("every invariant holds" if failed == 0 else f"{failed} invariant(s) violated"))
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
