"""Durable ingestion jobs: documents and feedback events processed by workers off a PostgreSQL queue."""
