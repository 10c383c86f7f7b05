<?php

declare(strict_types=1);

namespace App\Jobs;

use App\Jobs\Concerns\SimulatesWork;
use Rungate\ClaimedRun;
use Rungate\Contracts\HandlesRun;
use Rungate\RunContext;

/** inventory.sync: read the tenant's inventory from its provider (also the bulk items). */
final class SyncInventory implements HandlesRun
{
    use SimulatesWork;

    public function handle(ClaimedRun $run, RunContext $context): ?array
    {
        $this->simulate($run, $context);
        return ['synced' => true, 'tenant_id' => $run->tenantId];
    }
}
