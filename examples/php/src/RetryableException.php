<?php

declare(strict_types=1);

namespace Rungate;

/** A transient error: rungate.fail(..., retryable => true, retry_in => $retryIn). */
class RetryableException extends \RuntimeException
{
    public function __construct(string $message, public readonly float $retryIn = 1.0)
    {
        parent::__construct($message);
    }
}
