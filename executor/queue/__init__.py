"""The queue: every Redis key and command of the executor (RAGFlow's Redis Streams wire format,
the consumer, the producer); nothing else in the executor speaks Redis (docs/architecture.md)."""
