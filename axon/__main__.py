"""`python -m axon` (how the launcher starts its nodes)."""
from axon.cli.main import main

if __name__ == "__main__":
    main()
