"""rediq-tui: the Textual operations console of rediq."""
