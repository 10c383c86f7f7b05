<?php

declare(strict_types=1);

namespace Rungate\Contracts;

use Rungate\ClaimedRun;
use Rungate\RunContext;

/**
 * A handler for one operation type, like a Laravel job's handle(): the work
 * of a run, with no side effect that a revocation must prevent. Throw
 * Rungate\RetryableException for a transient error (the run goes back to the
 * queue, attempts permitting), Rungate\PermanentFailure for one that no retry
 * will fix, Rungate\Later for "not now" (released, no attempt spent). A long
 * handler calls $context->sleep() or $context->heartbeat() between its steps:
 * they keep the lease and throw Rungate\RunStopped once the run is taken
 * from the worker (cancelled, blocked at a heartbeat, lease lost); let it
 * through. The array it returns becomes the run's result.
 */
interface HandlesRun
{
    public function handle(ClaimedRun $run, RunContext $context): ?array;
}
