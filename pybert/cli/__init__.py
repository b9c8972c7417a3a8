"""Command-line tools: flag definitions -> config -> library call (no logic here)."""
