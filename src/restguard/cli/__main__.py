"""``python -m restguard.cli``."""

from restguard.cli.main import main

main()
