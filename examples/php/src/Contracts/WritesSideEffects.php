<?php

declare(strict_types=1);

namespace Rungate\Contracts;

use PDO;
use Rungate\ClaimedRun;

/**
 * A write family (operation_types.writes = true). The worker calls
 * rungate.recheck after handle(), and apply() only when the recheck allowed
 * the run, in the same transaction as the recheck and the completion: a run
 * whose authority was revoked meanwhile is blocked and leaves no side effect.
 */
interface WritesSideEffects extends HandlesRun
{
    public function apply(ClaimedRun $run, PDO $db): ?array;
}
