"""The seed's export_tfhub.py command (see pybert.cli.export_tfhub)."""

from pybert.cli.export_tfhub import main

if __name__ == "__main__":
    main()
