"""Small helpers shared across audiokit."""
