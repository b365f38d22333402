"""`python -m axon` and the .pyz entry point."""
from .cli import main

if __name__ == "__main__":
    main()
