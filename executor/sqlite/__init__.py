"""SQLite helpers shared by the task store and the embedded document store: result codes,
turns to write a file, and connections that close with their thread."""
