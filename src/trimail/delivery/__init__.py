"""Delivery backends: where an accepted message goes before the server says 250."""
