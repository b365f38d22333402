"""The `axon` command line; the entry point is axon.cli.main:main."""
