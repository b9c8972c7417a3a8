"""pybert-predict (see pybert.cli.predict)."""

from pybert.cli.predict import main

if __name__ == "__main__":
    main()
