"""`python -m axon` and the .pyz entry point."""
from axon.cli.commands import main

if __name__ == "__main__":
    main()
