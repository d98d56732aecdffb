"""The model catalogue and the schemas it checks every input against."""
