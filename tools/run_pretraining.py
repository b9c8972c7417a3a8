"""The seed's run_pretraining.py command line (see pybert.cli.run_pretraining)."""

from pybert.cli.run_pretraining import main

if __name__ == "__main__":
    main()
