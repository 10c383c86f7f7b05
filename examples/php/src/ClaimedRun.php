<?php
// Rungate\ClaimedRun: a row of rungate.claim (the composite rungate.claimed).

declare(strict_types=1);

namespace Rungate;

final class ClaimedRun
{
    public function __construct(
        public readonly int $id,
        public readonly string $leaseToken,
        public readonly int $attempt,
        public readonly string $operation,
        public readonly int $workspaceId,
        public readonly ?int $tenantId,
        public readonly ?int $initiatorId,
        public readonly array $payload,
        public readonly float $leaseSeconds,
    ) {
    }

    public static function fromRow(array $row): self
    {
        return new self(
            (int) $row['run_id'],
            $row['lease_token'],
            (int) $row['attempt'],
            $row['operation'],
            (int) $row['workspace_id'],
            $row['tenant_id'] === null ? null : (int) $row['tenant_id'],
            $row['initiator_id'] === null ? null : (int) $row['initiator_id'],
            json_decode($row['payload'] ?? '{}', true, 512, JSON_THROW_ON_ERROR) ?: [],
            (float) $row['lease_seconds'],
        );
    }
}
