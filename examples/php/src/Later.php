<?php

declare(strict_types=1);

namespace Rungate;

/**
 * Not now (the provider said "later"), like a Laravel job's release($delay):
 * rungate.release(...) puts the run back in the queue, due in $retryIn
 * seconds, without spending an attempt.
 */
class Later extends \RuntimeException
{
    public function __construct(string $message, public readonly float $retryIn = 1.0)
    {
        parent::__construct($message);
    }
}
