"""Tokenize a text file and report throughput (see pybert.cli.tokenize)."""

from pybert.cli.tokenize import main

if __name__ == "__main__":
    main()
