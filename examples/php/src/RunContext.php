<?php
// Rungate\RunContext: what a handler may ask of the worker while it works.

declare(strict_types=1);

namespace Rungate;

final class RunContext
{
    public function __construct(private readonly Worker $worker, private readonly ClaimedRun $run)
    {
    }

    /**
     * Keep the leases of the runs the worker holds, and hear whether this
     * run was taken away (then RunStopped is thrown). PHP has no threads:
     * a long handler calls this between steps (or sleeps with sleep()).
     *
     * @throws RunStopped
     */
    public function heartbeat(): void
    {
        $this->worker->checkpoint($this->run);
    }

    /**
     * Wait, heartbeating as the leases require; RunStopped as soon as the
     * run is taken away.
     *
     * @throws RunStopped
     */
    public function sleep(float $seconds): void
    {
        $until = microtime(true) + $seconds;
        while (($left = $until - microtime(true)) > 0) {
            usleep((int) (min($left, 0.1) * 1e6));   // a signal may cut it short: loop
            $this->worker->checkpoint($this->run);
        }
    }
}
