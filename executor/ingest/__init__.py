"""The ingestion pipeline: store, parse, chunk, embed and index documents (upstream's
``do_handle_task``). The pieces meet in :mod:`executor.ingest.types`."""
