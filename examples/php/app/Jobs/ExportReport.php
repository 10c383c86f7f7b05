<?php

declare(strict_types=1);

namespace App\Jobs;

use App\Jobs\Concerns\SimulatesWork;
use Rungate\ClaimedRun;
use Rungate\Contracts\HandlesRun;
use Rungate\RunContext;

/** reports.export: a workspace report (also scheduled, with system authority). */
final class ExportReport implements HandlesRun
{
    use SimulatesWork;

    public function handle(ClaimedRun $run, RunContext $context): ?array
    {
        $this->simulate($run, $context);
        return ['exported' => true, 'workspace_id' => $run->workspaceId];
    }
}
