<?php
/*
 * A rungate worker in PHP, with PDO pgsql (Debian: php-cli php-pgsql), shaped
 * like a Laravel queue worker: one small handler class per operation type
 * (app/Jobs/), a config map from operation to handler (config/rungate.php),
 * and this entry point in place of `php artisan queue:work`.
 *
 *   PGDATABASE=app PGUSER=app_worker php examples/php/worker.php --exit-when-idle 5
 *
 * The worker's whole protocol is six SQL functions (README, "The worker
 * protocol"):
 *
 *   claim      takes due runs in a batch; rungate decides each one again now
 *              and blocks, itself, the ones that are no longer legitimate:
 *              they are never handed to a worker. An empty claim may only
 *              mean that it stopped at rungate.claim_block_limit: it then
 *              notifies rungate_queued, and the worker calls again.
 *   heartbeat  keeps the lease of every run the worker holds; PHP has no
 *              threads, so a long handler heartbeats between its steps
 *              ($context->heartbeat(), or $context->sleep()). rungate
 *              decides again there: null means the run's authority was
 *              revoked and the run is blocked now; the handler is stopped.
 *   recheck    for write families (config: 'writes' => true, mirroring
 *              operation_types.writes), decided again right before the side
 *              effects, in the transaction that makes them (the handler's
 *              apply()) and completes the run. Denied: the run is now
 *              blocked; the worker commits that and does nothing else.
 *   complete / fail
 *              the outcome; a RetryableException goes back to the queue and
 *              is decided afresh when it is claimed again.
 *   release    the handler says "later" (throws Rungate\Later, e.g. the
 *              provider throttled): the run goes back to the queue, due
 *              after the delay, without spending an attempt.
 *
 * A run can be taken from the worker while its handler works: an operator
 * cancels it (rungate_cancelled names it: the listener LISTENs, and the
 * worker reads it at each $context->heartbeat()/sleep()), a heartbeat returns
 * null, or a call raises RG409 (the lease is no longer this worker's:
 * cancelled, blocked, expired and reaped). The handler is then stopped
 * (Rungate\RunStopped from $context) and nothing more is reported for the
 * run: its complete or fail would raise RG409, and its side effects would be
 * refused by the fence (rungate.guard_writes).
 *
 * It waits on LISTEN rungate_queued, and polls as a fallback (a run that
 * becomes due later, such as a delayed retry, is only found by polling). On
 * SIGTERM (or SIGINT) it stops claiming, finishes the run in hand, begins the
 * others it holds while --grace lasts and releases the rest (another worker
 * takes them at once, no attempt spent). One log line per transition.
 *
 * Connection: the standard libpq environment (PGHOST, PGPORT, PGUSER,
 * PGDATABASE, PGPASSWORD...). The role needs no table privilege on rungate:
 * USAGE on the schema and EXECUTE on the six functions (examples/app.sql),
 * plus whatever the handlers write in the application.
 */

declare(strict_types=1);

// PSR-4, as composer would map it: Rungate\ => src/, App\ => app/
spl_autoload_register(function (string $class): void {
    foreach (['Rungate\\' => '/src/', 'App\\' => '/app/'] as $prefix => $dir) {
        if (str_starts_with($class, $prefix)) {
            $file = __DIR__ . $dir . str_replace('\\', '/', substr($class, strlen($prefix))) . '.php';
            if (is_file($file)) {
                require $file;
            }
            return;
        }
    }
});

const USAGE = <<<'TXT'
usage: php worker.php [--worker NAME] [--ops a,b] [--batch N] [--poll SECONDS]
       [--once] [--max-runs N] [--exit-when-idle SECONDS] [--grace SECONDS]
  --worker          name recorded on runs and in the audit log
  --ops             comma-separated operations to claim (default: the configured ones)
  --batch           runs per claim (default 5)
  --poll            polling fallback: seconds between claims without notification (default 5)
  --once            one claim, handle what it returned, exit
  --max-runs        exit after handling N runs
  --exit-when-idle  exit once there has been nothing to do for SECONDS (0: the first empty claim)
  --grace           after SIGTERM, seconds during which held runs are still begun (default 30)

TXT;

function options(array $argv): array
{
    $opts = getopt('', ['worker:', 'ops:', 'batch:', 'poll:', 'once', 'max-runs:',
                        'exit-when-idle:', 'grace:', 'help'], $rest);
    if ($opts === false || isset($opts['help']) || $rest < count($argv)) {
        fwrite(isset($opts['help']) ? STDOUT : STDERR, USAGE);
        exit(isset($opts['help']) ? 0 : 2);
    }
    $number = function (string $key, ?float $default) use ($opts): ?float {
        if (!isset($opts[$key])) {
            return $default;
        }
        if (!is_numeric($opts[$key]) || (float) $opts[$key] < 0) {
            fwrite(STDERR, "worker.php: --$key: not a non-negative number\n");
            exit(2);
        }
        return (float) $opts[$key];
    };
    $o = [
        'name' => $opts['worker'] ?? 'php-' . gethostname() . '-' . getmypid(),
        'ops' => isset($opts['ops']) ? explode(',', $opts['ops']) : null,
        'batch' => (int) $number('batch', 5),
        'poll' => $number('poll', 5),
        'once' => isset($opts['once']),
        'max_runs' => isset($opts['max-runs']) ? (int) $number('max-runs', null) : null,
        'exit_when_idle' => $number('exit-when-idle', null),
        'grace' => $number('grace', 30),
    ];
    if ($o['batch'] < 1 || $o['max_runs'] === 0) {
        fwrite(STDERR, "worker.php: --batch and --max-runs must be positive\n");
        exit(2);
    }
    return $o;
}

$options = options($argv);
$worker = new Rungate\Worker(require __DIR__ . '/config/rungate.php', $options);
try {
    $worker->run();
} catch (PDOException $e) {
    $worker->log("error: {$e->getCode()} {$e->getMessage()}");
    exit(1);
}
exit(0);
