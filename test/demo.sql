-- test/demo.sql: a guided tour of rungate, played by test/demo.sh (make demo).
-- Placeholder: the real walk-through is still to be written.
-- Style: \echo headings between steps; psql echoes each statement before its result.

\echo '== rungate demo: install the extension'
CREATE EXTENSION rungate;

\echo '\n== the installed version'
SELECT extname, extversion FROM pg_extension WHERE extname = 'rungate';
