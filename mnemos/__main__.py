"""``python -m mnemos …``: the same CLI as ``mnemos …`` (for ``ray job submit``)."""

from mnemos.cli import main

if __name__ == "__main__":
    main()
