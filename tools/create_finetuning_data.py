"""The seed's create_finetuning_data.py command line (see pybert.cli.create_finetuning_data)."""

from pybert.cli.create_finetuning_data import main

if __name__ == "__main__":
    main()
