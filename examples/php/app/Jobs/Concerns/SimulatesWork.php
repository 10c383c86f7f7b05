<?php

declare(strict_types=1);

namespace App\Jobs\Concerns;

use Rungate\ClaimedRun;
use Rungate\Later;
use Rungate\PermanentFailure;
use Rungate\RetryableException;
use Rungate\RunContext;

/**
 * Demo knobs in the payload, so the examples can be driven by tests:
 * sleep (seconds of work), fail_attempts (fail retryably while attempt <= n),
 * fail = "permanent" (fail for good), later_attempts (say "later" while
 * attempt <= n).
 */
trait SimulatesWork
{
    protected function simulate(ClaimedRun $run, RunContext $context): void
    {
        $p = $run->payload;
        if (($p['fail'] ?? null) === 'permanent') {
            throw new PermanentFailure('permanent error requested by the payload');
        }
        if ($run->attempt <= (int) ($p['fail_attempts'] ?? 0)) {
            throw new RetryableException("transient error on attempt {$run->attempt}");
        }
        if ($run->attempt <= (int) ($p['later_attempts'] ?? 0)) {
            throw new Later('the provider asked to come back later', 1.0);
        }
        if (!empty($p['sleep'])) {
            $context->sleep((float) $p['sleep']);
        }
    }
}
