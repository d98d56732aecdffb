"""Media rows: download claims and results, deletion, and the retention policy."""
