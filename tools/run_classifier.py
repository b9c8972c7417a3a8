"""The seed's run_classifier.py command line (see pybert.cli.run_classifier)."""

from pybert.cli.run_classifier import main

if __name__ == "__main__":
    main()
