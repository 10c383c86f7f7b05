<?php
// Rungate\Worker: the loop of worker.php. See worker.php for the protocol.

declare(strict_types=1);

namespace Rungate;

use PDO;
use PDOException;
use Rungate\Contracts\HandlesRun;
use Rungate\Contracts\WritesSideEffects;

final class Worker
{
    private const SHUTDOWN = 'worker shutting down';

    private PDO $db;
    private PDO $listener;
    /** @var string[] */
    private array $operations;
    private ?float $stopAt = null;               // time of SIGTERM
    /** @var array<int, array{ClaimedRun, float}> run id => [run, last heartbeat] */
    private array $held = [];
    /** @var array<int, string> run id => why it was taken from this worker */
    private array $takenAway = [];
    private int $handled = 0;

    /**
     * @param array $config  config/rungate.php
     * @param array $options name, ops, batch, poll, once, max_runs, exit_when_idle, grace
     */
    public function __construct(private readonly array $config, private readonly array $options)
    {
        $this->operations = $options['ops']
            ?? [...array_keys($config['operations']), ...$config['orchestrators']];
    }

    private static function connect(string $name): PDO
    {
        // "pgsql:" with nothing else: libpq takes PGHOST, PGPORT, PGUSER,
        // PGDATABASE, PGPASSWORD... from the environment
        $pdo = new PDO('pgsql:', null, null, [PDO::ATTR_ERRMODE => PDO::ERRMODE_EXCEPTION]);
        $pdo->prepare('SELECT set_config(\'application_name\', ?, false)')->execute([$name]);
        return $pdo;
    }

    public function log(string $message): void
    {
        $t = microtime(true);
        fwrite(STDOUT, gmdate('Y-m-d\TH:i:s', (int) $t) . sprintf('.%03dZ', ($t * 1000) % 1000)
            . " {$this->options['name']} $message\n");
    }

    private function transition(ClaimedRun $run, string $what): void
    {
        $this->log("run {$run->id} {$run->operation} attempt {$run->attempt}: $what");
    }

    public function run(): void
    {
        $name = $this->options['name'];
        $this->db = self::connect($name);
        $this->listener = self::connect("$name listener");
        $this->listener->exec('LISTEN rungate_queued');
        $this->listener->exec('LISTEN rungate_cancelled');
        pcntl_async_signals(true);
        $onSignal = function (int $signo): void {
            if ($this->stopAt === null) {
                $this->stopAt = microtime(true);
                $this->log(($signo === SIGTERM ? 'SIGTERM' : 'SIGINT') . ': no more claims; finishing what is held');
            }
        };
        pcntl_signal(SIGTERM, $onSignal);
        pcntl_signal(SIGINT, $onSignal);
        $this->log('listening on rungate_queued; operations ' . implode(',', $this->operations));

        $idleSince = microtime(true);
        while ($this->stopAt === null) {
            $want = $this->options['batch'];
            if ($this->options['max_runs'] !== null) {
                $want = min($want, $this->options['max_runs'] - $this->handled);
                if ($want <= 0) {
                    $this->log("exiting: handled {$this->handled} run(s) (--max-runs)");
                    break;
                }
            }
            $runs = $this->claim($want);
            if ($runs) {
                $this->work($runs);
                $idleSince = microtime(true);
            }
            if ($this->options['once']) {
                $this->log('exiting: --once');
                break;
            }
            if ($runs) {
                continue;
            }
            $idle = microtime(true) - $idleSince;
            $timeout = $this->options['poll'];
            if ($this->options['exit_when_idle'] !== null) {
                if ($idle >= $this->options['exit_when_idle']) {
                    $this->log("exiting: idle for {$this->options['exit_when_idle']}s");
                    break;
                }
                $timeout = min($timeout, $this->options['exit_when_idle'] - $idle);
            }
            $this->wait($timeout);
        }
        if ($this->stopAt !== null) {
            $this->log('exiting: stopped by signal');
        }
    }

    /** Sleep until a rungate_queued notification, a signal, or the timeout. */
    private function wait(float $timeout): void
    {
        $until = microtime(true) + $timeout;
        while ($this->stopAt === null && ($left = $until - microtime(true)) > 0) {
            // short slices, so that a signal is seen promptly
            $ms = max(1, (int) (min($left, 0.5) * 1000));
            if ($this->notifications($ms)) {
                return;
            }
        }
    }

    /**
     * Read the notifications that came, waiting up to $ms for the first:
     * rungate_cancelled takes its run away; true when a rungate_queued came
     * (any number of them: we claim until nothing is due).
     */
    private function notifications(int $ms): bool
    {
        $queued = false;
        while (($n = $this->listener->pgsqlGetNotify(PDO::FETCH_ASSOC, $ms)) !== false) {
            $ms = 0;
            if ($n['message'] === 'rungate_cancelled') {
                $runId = (int) json_decode($n['payload'], true, 512, JSON_THROW_ON_ERROR)['run_id'];
                $this->takeAway($runId, 'cancelled by an operator (rungate_cancelled)');
            } else {
                $queued = true;
            }
        }
        return $queued;
    }

    /** The run is no longer this worker's: log it once; its handler is stopped at its next checkpoint. */
    private function takeAway(int $runId, string $reason): void
    {
        if (!isset($this->held[$runId])) {
            return;
        }
        [$run] = $this->held[$runId];
        unset($this->held[$runId]);
        $this->takenAway[$runId] = $reason;
        $this->transition($run, "$reason; stopping its job");
    }

    /**
     * Between a handler's steps (RunContext): heartbeats as the leases
     * require, the notifications that came, and RunStopped when $run was
     * taken from this worker.
     *
     * @throws RunStopped
     */
    public function checkpoint(ClaimedRun $run): void
    {
        $this->heartbeats();
        $this->notifications(0);
        if (isset($this->takenAway[$run->id])) {
            throw new RunStopped($this->takenAway[$run->id]);
        }
    }

    /** @return ClaimedRun[] */
    private function claim(int $n): array
    {
        $stmt = $this->db->prepare(
            'SELECT run_id, lease_token, attempt, operation, workspace_id, tenant_id,
                    initiator_id, payload,
                    extract(epoch FROM lease_expires_at - now())::float8 AS lease_seconds
               FROM rungate.claim(?, ?::text[], ?)');
        $stmt->execute([$this->options['name'], self::textArray($this->operations), $n]);
        $runs = [];
        foreach ($stmt->fetchAll(PDO::FETCH_ASSOC) as $row) {
            $run = ClaimedRun::fromRow($row);
            $this->held[$run->id] = [$run, microtime(true)];
            $this->transition($run, 'claimed');
            $runs[] = $run;
        }
        return $runs;
    }

    private static function textArray(array $items): string
    {
        return '{' . implode(',', array_map(
            fn ($s) => '"' . addcslashes((string) $s, '"\\') . '"', $items)) . '}';
    }

    /** Heartbeat every held run that is at a third of its lease (RunContext calls it). */
    public function heartbeats(): void
    {
        $now = microtime(true);
        foreach ($this->held as $id => [$run, $last]) {
            if ($now - $last < max(0.5, $run->leaseSeconds / 3)) {
                continue;
            }
            try {
                $stmt = $this->db->prepare('SELECT rungate.heartbeat(?, ?)');
                $stmt->execute([$run->id, $run->leaseToken]);
                $until = $stmt->fetchColumn();
            } catch (PDOException $e) {
                $state = (string) $e->getCode();
                if ($state === 'RG409' || $state === 'RG404') {
                    // no longer ours: cancelled, blocked, expired and reaped
                    $this->takeAway($id, "lease lost at heartbeat: $state {$e->getMessage()}");
                } else {
                    $this->transition($run, "heartbeat refused: $state {$e->getMessage()}");
                }
                continue;
            }
            if ($until === null) {
                // rungate decided again and denied: the run is blocked now
                $this->takeAway($id, 'blocked by heartbeat: its authority was revoked');
            } else {
                $this->held[$id][1] = $now;
            }
        }
    }

    /** @param ClaimedRun[] $runs */
    private function work(array $runs): void
    {
        foreach ($runs as $i => $run) {
            if ($this->stopAt !== null && microtime(true) - $this->stopAt >= $this->options['grace']) {
                foreach (array_slice($runs, $i) as $rest) {
                    $this->release($rest, self::SHUTDOWN, 0.0);
                }
                break;
            }
            $this->process($run);
        }
        $this->handled += count($runs);
    }

    private function process(ClaimedRun $run): void
    {
        $entry = $this->config['operations'][$run->operation] ?? null;
        $context = new RunContext($this, $run);
        try {
            $context->heartbeat();               // cancelled while it waited in the batch
            if ($entry === null) {
                throw new PermanentFailure("no handler for {$run->operation}");
            }
            /** @var HandlesRun $handler */
            $handler = new $entry['handler']();
            $result = $handler->handle($run, $context);
            $context->heartbeat();
            unset($this->held[$run->id]);        // no more heartbeats: we finish it now
            if ($entry['writes']) {
                if (!$handler instanceof WritesSideEffects) {
                    throw new PermanentFailure("{$entry['handler']} handles a write family but does not implement WritesSideEffects");
                }
                $this->db->beginTransaction();
                try {
                    $stmt = $this->db->prepare(
                        'SELECT allowed, reason_code, reason_message FROM rungate.recheck(?, ?)');
                    $stmt->execute([$run->id, $run->leaseToken]);
                    $decision = $stmt->fetch(PDO::FETCH_ASSOC);
                    if (!$decision['allowed']) {
                        // the run is blocked now: commit that, make no side effect
                        $this->db->commit();
                        $this->transition($run, "blocked by recheck: {$decision['reason_code']} ({$decision['reason_message']})");
                        return;
                    }
                    $result = $handler->apply($run, $this->db);
                    $this->complete($run, $result);
                    $this->db->commit();
                } catch (\Throwable $e) {
                    if ($this->db->inTransaction()) {
                        $this->db->rollBack();
                    }
                    throw $e;
                }
            } else {
                $this->complete($run, $result);
            }
            $this->transition($run, 'succeeded');
        } catch (RunStopped $e) {
            $this->transition($run, "stopped: {$e->getMessage()}");
        } catch (Later $e) {
            $this->release($run, $e->getMessage(), $e->retryIn);
        } catch (RetryableException $e) {
            $this->fail($run, $e->getMessage(), $e->retryIn);
        } catch (PermanentFailure $e) {
            $this->fail($run, $e->getMessage(), null);
        } catch (PDOException $e) {
            $state = (string) $e->getCode();
            if ($state === 'RG409' || $state === 'RG404') {
                // no longer ours (cancelled, blocked, expired): stop, report nothing
                unset($this->held[$run->id]);
                $this->transition($run, "lease lost: $state {$e->getMessage()}");
            } else {
                $this->fail($run, "$state: {$e->getMessage()}", (float) $this->config['retry_in']);
            }
        } catch (\Throwable $e) {                // a bug in a handler: retry it, bounded
            $this->fail($run, get_class($e) . ": {$e->getMessage()}", (float) $this->config['retry_in']);
        } finally {
            unset($this->takenAway[$run->id]);
        }
    }

    private function complete(ClaimedRun $run, ?array $result): void
    {
        $this->db->prepare('SELECT rungate.complete(?, ?, ?::jsonb)')->execute([
            $run->id, $run->leaseToken,
            $result === null ? null : json_encode($result, JSON_THROW_ON_ERROR),
        ]);
    }

    /** $retryIn null: a permanent failure; seconds: back to the queue */
    private function fail(ClaimedRun $run, string $error, ?float $retryIn): void
    {
        unset($this->held[$run->id]);
        try {
            $stmt = $this->db->prepare(
                'SELECT status FROM rungate.fail(?, ?, ?, ?::boolean, make_interval(secs => ?::float8))');
            $stmt->execute([$run->id, $run->leaseToken, $error,
                            $retryIn === null ? 'false' : 'true', $retryIn]);
            $status = $stmt->fetchColumn();
        } catch (PDOException $e) {
            $this->transition($run, "lease lost: {$e->getCode()} {$e->getMessage()}");
            return;
        }
        if ($status === 'queued') {
            $this->transition($run, "retry in {$retryIn}s: $error");
        } else {
            $this->transition($run, "failed: $error");
        }
    }

    /** Back to the queue, due in $retryIn seconds, no attempt spent. */
    private function release(ClaimedRun $run, string $reason, float $retryIn): void
    {
        unset($this->held[$run->id]);
        try {
            $this->db->prepare('SELECT rungate.release(?, ?, now() + make_interval(secs => ?::float8))')
                     ->execute([$run->id, $run->leaseToken, $retryIn]);
        } catch (PDOException $e) {
            $this->transition($run, "lease lost: {$e->getCode()} {$e->getMessage()}");
            return;
        }
        $due = $retryIn > 0 ? ", due in {$retryIn}s" : '';
        $this->transition($run, "released$due: $reason");
    }
}
