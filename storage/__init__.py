"""Storage: the embedded PostgreSQL, the asyncpg pool, migrations, and every SQL statement."""
