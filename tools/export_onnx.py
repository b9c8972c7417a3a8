"""pybert-export-onnx (see pybert.cli.export_onnx)."""

from pybert.cli.export_onnx import main

if __name__ == "__main__":
    main()
