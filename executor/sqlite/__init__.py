"""SQLite helpers shared by the task store and the embedded document store: result codes
and turns to write a file."""
