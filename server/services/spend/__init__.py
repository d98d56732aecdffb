"""What generations cost: the operator's price table, estimates before a start, spend and budgets."""
