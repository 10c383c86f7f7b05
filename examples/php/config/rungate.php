<?php
// config/rungate.php: which handler runs each operation type, and whether the
// type is a write family. `writes` mirrors rungate.operation_types.writes:
// the worker's role cannot read that table, so the application says it here.

use App\Jobs\ExecuteRestore;
use App\Jobs\ExportReport;
use App\Jobs\SyncInventory;
use App\Jobs\VerifyProviderConnection;

return [
    'operations' => [
        'provider.connection.verify' => ['handler' => VerifyProviderConnection::class, 'writes' => false],
        'inventory.sync'             => ['handler' => SyncInventory::class,            'writes' => false],
        'reports.export'             => ['handler' => ExportReport::class,             'writes' => false],
        'restore.execute'            => ['handler' => ExecuteRestore::class,           'writes' => true],
    ],
    // Bulk orchestrators are claimed so that they fan out into their items;
    // rungate never hands them to a worker.
    'orchestrators' => ['bulk.inventory.sync'],
    // delay of a retryable failure thrown without one, seconds
    'retry_in' => 1.0,
];
