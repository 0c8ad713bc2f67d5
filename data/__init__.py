"""Task data: the task folders (data/sort, ...), their generators, the JSONL loader and
oracle helpers (task.py), and the chat format (chat.py). Imports nothing from the rest of
the project."""
