"""The seed's tf2_encoder_checkpoint_converter.py command (pybert.cli module of that name)."""

from pybert.cli.tf2_encoder_checkpoint_converter import main

if __name__ == "__main__":
    main()
