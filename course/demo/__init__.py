"""Demo data: the news source of chapter 1 and the feeds of chapter 3 (seeded, reproducible)."""
