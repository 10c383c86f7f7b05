<?php
// Rungate\RunContext: what a handler may ask of the worker while it works.

declare(strict_types=1);

namespace Rungate;

final class RunContext
{
    public function __construct(private readonly Worker $worker)
    {
    }

    /**
     * Keep the leases of the runs the worker holds. PHP has no threads:
     * a long handler calls this between steps (or sleeps with sleep()).
     */
    public function heartbeat(): void
    {
        $this->worker->heartbeats();
    }

    /** Wait, heartbeating as the leases require. */
    public function sleep(float $seconds): void
    {
        $until = microtime(true) + $seconds;
        while (($left = $until - microtime(true)) > 0) {
            usleep((int) (min($left, 0.1) * 1e6));   // a signal may cut it short: loop
            $this->worker->heartbeats();
        }
    }
}
