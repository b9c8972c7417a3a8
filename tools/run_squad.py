"""The seed's run_squad.py command line (see pybert.cli.run_squad)."""

from pybert.cli.run_squad import main

if __name__ == "__main__":
    main()
