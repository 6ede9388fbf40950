"""The task store: upstream RAGFlow's task, document and knowledgebase tables on SQLite, MariaDB
or PostgreSQL, and the statements the executor runs on them (docs/architecture.md)."""
