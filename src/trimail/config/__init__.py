"""The configuration tree shared by the CLI, TOML files and embedding applications."""
