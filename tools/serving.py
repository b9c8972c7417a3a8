"""The seed's serving.py command (see pybert.cli.serving)."""

from pybert.cli.serving import main

if __name__ == "__main__":
    main()
