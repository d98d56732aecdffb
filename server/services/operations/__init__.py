"""What operators watch: statistics from the tables, and alerts on repeated failures."""
