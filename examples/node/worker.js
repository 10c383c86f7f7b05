#!/usr/bin/env node
// A rungate worker in Node.js, with pg (npm).
//
//   cd examples/node && npm ci
//   PGDATABASE=app PGUSER=app_worker node worker.js --exit-when-idle 5
//
// The worker's whole protocol is six SQL functions (README, "The worker
// protocol"):
//
//   claim      takes due runs in a batch; rungate decides each one again now
//              and blocks, itself, the ones that are no longer legitimate:
//              they are never handed to a worker. An empty claim may only
//              mean that it stopped at rungate.claim_block_limit: it then
//              notifies rungate_queued, and the worker calls again.
//   heartbeat  keeps the lease of every run the worker holds (a timer), so a
//              long run is not reaped and handed to another worker. rungate
//              decides again there: null means the run's authority was
//              revoked and the run is blocked now; the job is stopped.
//   recheck    for write families (operation_types.writes), decided again
//              right before the side effects, in the transaction that makes
//              them and completes the run. Denied: the run is now blocked;
//              the worker commits that and does nothing else.
//   complete / fail
//              the outcome; a retryable failure goes back to the queue and is
//              decided afresh when it is claimed again.
//   release    the job says "later" (throws Later, e.g. the provider
//              throttled): the run goes back to the queue, due after the
//              delay, without spending an attempt.
//
// A run can be taken from the worker while its job works: an operator cancels
// it (rungate_cancelled names it: the listener LISTENs), a heartbeat returns
// null, or a call raises RG409 (the lease is no longer this worker's:
// cancelled, blocked, expired and reaped). The job is then stopped at its next
// job.sleep()/job.checkpoint() (job.signal is aborted) and nothing more is
// reported for it: its complete or fail would raise RG409, and its side
// effects would be refused by the fence (rungate.guard_writes).
//
// It waits on LISTEN rungate_queued, and polls as a fallback (a run that
// becomes due later, such as a delayed retry, is only found by polling). On
// SIGTERM (or SIGINT) it stops claiming, finishes the run in hand, begins the
// others it holds while --grace lasts and releases the rest (another worker
// takes them at once, no attempt spent). One log line per transition.
//
// Connection: the standard libpq environment (PGHOST, PGPORT, PGUSER,
// PGDATABASE, PGPASSWORD), which pg reads. The role needs no table privilege
// on rungate: USAGE on the schema and EXECUTE on the six functions
// (examples/app.sql), plus whatever the handlers write in the application.
'use strict';

const os = require('node:os');
const { parseArgs } = require('node:util');
const { Client, Pool } = require('pg');

// ---------------------------------------------------------------------------
// Handlers: one class per operation type. `writes` mirrors the type's
// operation_types.writes (the worker has no privilege to read that table).
// perform() is the work, with no side effect a revocation must prevent;
// apply() is the side effect of a write family, run only after an allowed
// recheck and in the same transaction as the recheck and the completion.
// ---------------------------------------------------------------------------

/** A transient error: the run goes back to the queue (attempts permitting). */
class Retryable extends Error {
  constructor(message, retryIn = 1) {
    super(message);
    this.retryIn = retryIn;
  }
}

/** An error that no retry will fix: the run fails. */
class Permanent extends Error {}

/**
 * Not now (the provider said "later"): the run is released, due again in
 * retryIn seconds, and no attempt is spent.
 */
class Later extends Error {
  constructor(message, retryIn = 1) {
    super(message);
    this.retryIn = retryIn;
  }
}

/**
 * The run was taken from this worker while its job worked (cancelled,
 * blocked at a heartbeat, lease lost): stop and report nothing.
 */
class Stopped extends Error {}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// What a handler gets besides the claimed row: where a long job lets itself
// be stopped. job.signal (an AbortSignal) is aborted when the run is taken
// from the worker; job.sleep() and job.checkpoint() then throw Stopped.
function makeJob(row) {
  const controller = new AbortController();
  const job = Object.assign(row, {
    payload: row.payload || {},
    signal: controller.signal,
    stop(reason) {
      if (!controller.signal.aborted) controller.abort(reason);
    },
    checkpoint() {
      if (controller.signal.aborted) throw new Stopped(controller.signal.reason);
    },
    sleep(seconds) {
      job.checkpoint();
      return new Promise((resolve, reject) => {
        const onAbort = () => {
          clearTimeout(timer);
          reject(new Stopped(controller.signal.reason));
        };
        const timer = setTimeout(() => {
          controller.signal.removeEventListener('abort', onAbort);
          resolve();
        }, seconds * 1000);
        controller.signal.addEventListener('abort', onAbort, { once: true });
      });
    },
  });
  return job;
}

// Demo knobs in the payload, so the examples can be driven by tests:
// sleep (seconds of work), fail_attempts (fail retryably while attempt <= n),
// fail = "permanent" (fail for good), later_attempts (say "later" while
// attempt <= n).
async function simulate(job) {
  const p = job.payload;
  if (p.fail === 'permanent') throw new Permanent('permanent error requested by the payload');
  if (job.attempt <= Number(p.fail_attempts || 0)) {
    throw new Retryable(`transient error on attempt ${job.attempt}`);
  }
  if (job.attempt <= Number(p.later_attempts || 0)) {
    throw new Later('the provider asked to come back later', 1);
  }
  if (p.sleep) await job.sleep(Number(p.sleep)); // the heartbeat timer keeps the lease
}

class VerifyProviderConnection {
  writes = false;
  async perform(job) {
    await simulate(job);
    return { verified: true, tenant_id: Number(job.tenant_id) };
  }
}

class SyncInventory {
  writes = false;
  async perform(job) {
    await simulate(job);
    return { synced: true, tenant_id: Number(job.tenant_id) };
  }
}

class ExportReport {
  writes = false;
  async perform(job) {
    await simulate(job);
    return { exported: true, workspace_id: Number(job.workspace_id) };
  }
}

class ExecuteRestore {
  writes = true;
  async perform(job) {
    await simulate(job); // e.g. fetch and verify the snapshot
  }
  async apply(job, db) {
    const snapshot = job.payload.snapshot || 'latest';
    await db.query(
      'INSERT INTO public.restore_log (run_id, tenant_id, snapshot) VALUES ($1, $2, $3)',
      [job.run_id, job.tenant_id, snapshot]);
    return { restored: snapshot, tenant_id: Number(job.tenant_id) };
  }
}

const HANDLERS = {
  'provider.connection.verify': new VerifyProviderConnection(),
  'inventory.sync': new SyncInventory(),
  'reports.export': new ExportReport(),
  'restore.execute': new ExecuteRestore(),
};
// Bulk orchestrators are claimed so that they fan out into their items;
// rungate never hands them to a worker.
const ORCHESTRATORS = ['bulk.inventory.sync'];

// ---------------------------------------------------------------------------

const SHUTDOWN = 'worker shutting down';

class Worker {
  constructor(opts) {
    this.opts = opts;
    this.name = opts.worker;
    this.operations = opts.ops ? opts.ops.split(',') : [...Object.keys(HANDLERS), ...ORCHESTRATORS];
    this.stopAt = null;          // time of SIGTERM
    this.held = new Map();       // run_id -> { job, last heartbeat }
    this.handled = 0;
    this.pending = false;        // a notification came while we were not waiting
    this.wake = null;            // resolves the current wait
  }

  log(msg) {
    console.log(`${new Date().toISOString()} ${this.name} ${msg}`);
  }

  transition(job, what) {
    this.log(`run ${job.run_id} ${job.operation} attempt ${job.attempt}: ${what}`);
  }

  async run() {
    this.pool = new Pool({ max: 3, application_name: this.name });
    this.listener = new Client({ application_name: `${this.name} listener` });
    await this.listener.connect();
    this.listener.on('notification', (msg) => {
      if (msg.channel === 'rungate_cancelled') {
        this.takeAway(Number(JSON.parse(msg.payload).run_id),
          'cancelled by an operator (rungate_cancelled)');
      } else {
        this.poke(); // rungate_queued: claim again
      }
    });
    // A lost connection: exit non-zero and let the supervisor restart us; the
    // runs we held come back through reap_expired when their leases expire.
    const lost = (err) => {
      this.log(`connection lost: ${err.code || ''} ${err.message}`);
      process.exit(1);
    };
    this.listener.on('error', lost);
    this.pool.on('error', lost);
    await this.listener.query('LISTEN rungate_queued');
    await this.listener.query('LISTEN rungate_cancelled');
    const onSignal = (sig) => {
      if (this.stopAt === null) {
        this.stopAt = Date.now();
        this.log(`${sig}: no more claims; finishing what is held`);
        this.poke();
      }
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
    const beats = setInterval(() => this.heartbeats(), 200);
    this.log(`listening on rungate_queued; operations ${this.operations.join(',')}`);
    let idleSince = Date.now();
    try {
      while (this.stopAt === null) {
        let want = this.opts.batch;
        if (this.opts.maxRuns !== null) {
          want = Math.min(want, this.opts.maxRuns - this.handled);
          if (want <= 0) {
            this.log(`exiting: handled ${this.handled} run(s) (--max-runs)`);
            break;
          }
        }
        this.pending = false;
        const jobs = await this.claim(want);
        if (jobs.length > 0) {
          await this.work(jobs);
          idleSince = Date.now();
        }
        if (this.opts.once) {
          this.log('exiting: --once');
          break;
        }
        if (jobs.length > 0) continue;
        const idle = (Date.now() - idleSince) / 1000;
        let timeout = this.opts.poll;
        if (this.opts.exitWhenIdle !== null) {
          if (idle >= this.opts.exitWhenIdle) {
            this.log(`exiting: idle for ${this.opts.exitWhenIdle}s`);
            break;
          }
          timeout = Math.min(timeout, this.opts.exitWhenIdle - idle);
        }
        await this.wait(timeout * 1000);
      }
      if (this.stopAt !== null) this.log('exiting: stopped by signal');
    } finally {
      clearInterval(beats);
      while (this.beating) await sleep(10);
      await this.listener.end();
      await this.pool.end();
    }
  }

  // A notification or a signal ends the current wait (or the next one).
  poke() {
    this.pending = true;
    if (this.wake) this.wake();
  }

  wait(ms) {
    if (this.pending || this.stopAt !== null) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(done, Math.max(0, ms));
      const self = this;
      function done() {
        clearTimeout(timer);
        self.wake = null;
        resolve();
      }
      this.wake = done;
    });
  }

  async claim(n) {
    const { rows } = await this.pool.query(
      `SELECT run_id, lease_token, attempt, operation, workspace_id, tenant_id,
              initiator_id, payload,
              extract(epoch FROM lease_expires_at - now())::float8 AS lease_seconds
         FROM rungate.claim($1, $2::text[], $3)`,
      [this.name, this.operations, n]);
    const jobs = rows.map(makeJob);
    for (const job of jobs) {
      this.held.set(String(job.run_id), { job, last: Date.now() });
      this.transition(job, 'claimed');
    }
    return jobs;
  }

  // The run is no longer this worker's: log it once, stop its job.
  takeAway(runId, reason) {
    const entry = this.held.get(String(runId));
    if (!entry) return;
    this.held.delete(String(runId));
    this.transition(entry.job, `${reason}; stopping its job`);
    entry.job.stop(reason);
  }

  // Heartbeat every held run at a third of its lease.
  async heartbeats() {
    if (this.beating) return;
    this.beating = true;
    try {
      const now = Date.now();
      for (const entry of [...this.held.values()]) {
        const { job } = entry;
        if (now - entry.last < Math.max(500, (job.lease_seconds * 1000) / 3)) continue;
        let until;
        try {
          ({ rows: [{ until }] } = await this.pool.query(
            'SELECT rungate.heartbeat($1, $2) AS until', [job.run_id, job.lease_token]));
        } catch (err) {
          if (err.code === 'RG409' || err.code === 'RG404') {
            // no longer ours: cancelled, blocked, expired and reaped
            this.takeAway(job.run_id, `lease lost at heartbeat: ${err.code} ${err.message}`);
          } else if (this.held.has(String(job.run_id))) {
            this.transition(job, `heartbeat refused: ${err.code} ${err.message}`);
          }
          continue;
        }
        if (until === null) {
          // rungate decided again and denied: the run is blocked now
          this.takeAway(job.run_id, 'blocked by heartbeat: its authority was revoked');
        } else {
          entry.last = now;
        }
      }
    } finally {
      this.beating = false;
    }
  }

  async work(jobs) {
    for (let i = 0; i < jobs.length; i++) {
      if (this.stopAt !== null && (Date.now() - this.stopAt) / 1000 >= this.opts.grace) {
        for (const rest of jobs.slice(i)) await this.release(rest, SHUTDOWN, 0);
        break;
      }
      await this.process(jobs[i]);
    }
    this.handled += jobs.length;
  }

  async process(job) {
    const handler = HANDLERS[job.operation];
    try {
      job.checkpoint(); // cancelled while it waited in the batch
      if (!handler) throw new Permanent(`no handler for ${job.operation}`);
      let result = await handler.perform(job);
      this.held.delete(String(job.run_id)); // no more heartbeats: we finish it now
      job.checkpoint();
      if (handler.writes) {
        const db = await this.pool.connect();
        try {
          await db.query('BEGIN');
          const { rows: [d] } = await db.query(
            'SELECT allowed, reason_code, reason_message FROM rungate.recheck($1, $2)',
            [job.run_id, job.lease_token]);
          if (!d.allowed) {
            // the run is blocked now: commit that, make no side effect
            await db.query('COMMIT');
            this.transition(job, `blocked by recheck: ${d.reason_code} (${d.reason_message})`);
            return;
          }
          result = await handler.apply(job, db);
          await this.complete(job, result, db);
          await db.query('COMMIT');
        } catch (err) {
          await db.query('ROLLBACK').catch(() => {});
          throw err;
        } finally {
          db.release();
        }
      } else {
        await this.complete(job, result, this.pool);
      }
      this.transition(job, 'succeeded');
    } catch (err) {
      if (err instanceof Stopped) this.transition(job, `stopped: ${err.message}`);
      else if (err instanceof Later) await this.release(job, err.message, err.retryIn);
      else if (err instanceof Retryable) await this.fail(job, err.message, err.retryIn);
      else if (err instanceof Permanent) await this.fail(job, err.message, null);
      else if (err.code === 'RG409' || err.code === 'RG404') {
        // no longer ours (cancelled, blocked, expired): stop, report nothing
        this.held.delete(String(job.run_id));
        this.transition(job, `lease lost: ${err.code} ${err.message}`);
      } else if (err.code) await this.fail(job, `${err.code}: ${err.message}`, 1);
      else await this.fail(job, `${err.name}: ${err.message}`, 1); // a bug in a handler: retry it, bounded
    }
  }

  async complete(job, result, db) {
    await db.query('SELECT rungate.complete($1, $2, $3)',
      [job.run_id, job.lease_token, result === undefined || result === null ? null : JSON.stringify(result)]);
  }

  // retryIn null: a permanent failure; a number of seconds: back to the queue
  async fail(job, error, retryIn) {
    this.held.delete(String(job.run_id));
    let status;
    try {
      ({ rows: [{ status }] } = await this.pool.query(
        'SELECT status FROM rungate.fail($1, $2, $3, $4, make_interval(secs => $5))',
        [job.run_id, job.lease_token, error, retryIn !== null, retryIn]));
    } catch (err) {
      this.transition(job, `lease lost: ${err.code} ${err.message}`);
      return;
    }
    if (status === 'queued') {
      this.transition(job, `retry in ${retryIn}s: ${error}`);
    } else {
      this.transition(job, `failed: ${error}`);
    }
  }

  // Back to the queue, due in retryIn seconds, no attempt spent.
  async release(job, reason, retryIn) {
    this.held.delete(String(job.run_id));
    try {
      await this.pool.query(
        'SELECT rungate.release($1, $2, now() + make_interval(secs => $3))',
        [job.run_id, job.lease_token, retryIn]);
    } catch (err) {
      this.transition(job, `lease lost: ${err.code} ${err.message}`);
      return;
    }
    this.transition(job, `released${retryIn ? `, due in ${retryIn}s` : ''}: ${reason}`);
  }
}

function options(argv) {
  const { values } = parseArgs({
    args: argv,
    options: {
      worker: { type: 'string', default: `node-${os.hostname()}-${process.pid}` },
      ops: { type: 'string' },
      batch: { type: 'string', default: '5' },
      poll: { type: 'string', default: '5' },
      once: { type: 'boolean', default: false },
      'max-runs': { type: 'string' },
      'exit-when-idle': { type: 'string' },
      grace: { type: 'string', default: '30' },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    console.log(`usage: node worker.js [--worker NAME] [--ops a,b] [--batch N] [--poll SECONDS]
       [--once] [--max-runs N] [--exit-when-idle SECONDS] [--grace SECONDS]
  --worker          name recorded on runs and in the audit log
  --ops             comma-separated operations to claim (default: the handlers')
  --batch           runs per claim (default 5)
  --poll            polling fallback: seconds between claims without notification (default 5)
  --once            one claim, handle what it returned, exit
  --max-runs        exit after handling N runs
  --exit-when-idle  exit once there has been nothing to do for SECONDS (0: the first empty claim)
  --grace           after SIGTERM, seconds during which held runs are still begun (default 30)`);
    process.exit(0);
  }
  const num = (v) => (v === undefined ? null : Number(v));
  const opts = {
    worker: values.worker,
    ops: values.ops,
    batch: num(values.batch),
    poll: num(values.poll),
    once: values.once,
    maxRuns: num(values['max-runs']),
    exitWhenIdle: num(values['exit-when-idle']),
    grace: num(values.grace),
  };
  for (const k of ['batch', 'poll', 'maxRuns', 'exitWhenIdle', 'grace']) {
    if (opts[k] !== null && !(Number.isFinite(opts[k]) && opts[k] >= 0)) {
      throw new Error(`--${k}: not a non-negative number`);
    }
  }
  if (opts.batch < 1 || opts.maxRuns === 0) throw new Error('--batch and --max-runs must be positive');
  return opts;
}

async function main() {
  let opts;
  try {
    opts = options(process.argv.slice(2));
  } catch (err) {
    console.error(`worker.js: ${err.message}`);
    process.exit(2);
  }
  const worker = new Worker(opts);
  try {
    await worker.run();
  } catch (err) {
    worker.log(`error: ${err.code || ''} ${err.message}`);
    process.exit(1);
  }
}

if (require.main === module) main();

module.exports = { Worker, HANDLERS, ORCHESTRATORS, Retryable, Permanent, Later, Stopped };
