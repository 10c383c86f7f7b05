<?php

declare(strict_types=1);

namespace App\Jobs;

use App\Jobs\Concerns\SimulatesWork;
use PDO;
use Rungate\ClaimedRun;
use Rungate\Contracts\WritesSideEffects;
use Rungate\RunContext;

/**
 * restore.execute, a write family: handle() prepares (fetches and verifies
 * the snapshot), apply() restores, only after rungate.recheck allowed it.
 */
final class ExecuteRestore implements WritesSideEffects
{
    use SimulatesWork;

    public function handle(ClaimedRun $run, RunContext $context): ?array
    {
        $this->simulate($run, $context);
        return null;
    }

    public function apply(ClaimedRun $run, PDO $db): ?array
    {
        $snapshot = (string) ($run->payload['snapshot'] ?? 'latest');
        $db->prepare('INSERT INTO public.restore_log (run_id, tenant_id, snapshot) VALUES (?, ?, ?)')
           ->execute([$run->id, $run->tenantId, $snapshot]);
        return ['restored' => $snapshot, 'tenant_id' => $run->tenantId];
    }
}
