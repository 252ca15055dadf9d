"""``python -m restguard``: the ``restguard`` command (``python -m restguard version``)."""

from restguard.cli.main import main

if __name__ == "__main__":
    main()
