"""``python -m redblue``: the command line (also ``accelerate launch -m redblue ...``)."""

from redblue.cli.main import main

if __name__ == "__main__":
    main()
