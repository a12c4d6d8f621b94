"""The HTML run report's tests: its data, how it is written, and what a real browser shows."""
