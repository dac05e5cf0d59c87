"""`python -m service.cli ...`: the `arbor` command (the benches start the service so)."""
import sys

from service.cli.arbor import main

sys.exit(main())
