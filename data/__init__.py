"""Task data: the default sorting task, the JSONL loaders and the oracle helpers.
Imports nothing from the rest of the project (see DESIGN.md)."""
from data.task import (CHAT_TOKENS, DataError, Task, check_lengths, fully_right_rate,
                       load_oracle, load_task, mean_score, read_jsonl, train_tokenizer,
                       win_rate)

__all__ = ["CHAT_TOKENS", "DataError", "Task", "check_lengths", "fully_right_rate",
           "load_oracle", "load_task", "mean_score", "read_jsonl", "train_tokenizer",
           "win_rate"]
