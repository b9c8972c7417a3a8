"""The seed's create_pretraining_data.py command line (see pybert.cli.create_pretraining_data)."""

from pybert.cli.create_pretraining_data import main

if __name__ == "__main__":
    main()
