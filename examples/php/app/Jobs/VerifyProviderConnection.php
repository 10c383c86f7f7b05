<?php

declare(strict_types=1);

namespace App\Jobs;

use App\Jobs\Concerns\SimulatesWork;
use Rungate\ClaimedRun;
use Rungate\Contracts\HandlesRun;
use Rungate\RunContext;

/** provider.connection.verify: check the tenant's provider credentials. */
final class VerifyProviderConnection implements HandlesRun
{
    use SimulatesWork;

    public function handle(ClaimedRun $run, RunContext $context): ?array
    {
        $this->simulate($run, $context);
        return ['verified' => true, 'tenant_id' => $run->tenantId];
    }
}
