"""`python -m pushi.base`: runs the Pushi server."""

from .state import main

main()
