"""The event log offline: Parquet files (sink), the bid-outcome join and reports (DuckDB)."""
