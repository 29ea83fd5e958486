"""raftlog's HTTP API (FastAPI). Routers stay thin; errors become HTTP in one place."""
