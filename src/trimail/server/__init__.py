"""The Trio shell: listeners, sessions, deadlines and graceful shutdown."""
