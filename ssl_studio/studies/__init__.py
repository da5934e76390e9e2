"""Studies: several runs at matched budgets, summarised as a table and a figure."""
