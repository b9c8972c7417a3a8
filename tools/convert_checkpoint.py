"""Convert a pretrained BERT checkpoint to pybert (see pybert.cli.convert_checkpoint)."""

from pybert.cli.convert_checkpoint import main

if __name__ == "__main__":
    main()
