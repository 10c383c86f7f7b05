<?php

declare(strict_types=1);

namespace Rungate;

/** An error that no retry will fix: rungate.fail(..., retryable => false). */
class PermanentFailure extends \RuntimeException
{
}
