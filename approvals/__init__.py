"""The web endpoint: approval pages and links, task callbacks, process status."""
