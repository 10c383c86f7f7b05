<?php

declare(strict_types=1);

namespace Rungate;

/**
 * The run was taken from this worker while its handler worked: an operator
 * cancelled it (rungate_cancelled), a heartbeat returned null (its authority
 * was revoked: it is blocked now), or a heartbeat raised RG409 (the lease is
 * no longer this worker's). RunContext::sleep() and RunContext::heartbeat()
 * throw it; the worker stops the handler and reports nothing for the run.
 * Handlers let it through.
 */
final class RunStopped extends \RuntimeException
{
}
