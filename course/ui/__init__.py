"""What the notebook shows: widgets, the in-page browser client, frame display, static files."""
