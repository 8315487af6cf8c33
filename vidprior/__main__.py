import sys

from vidprior.cli import main

sys.exit(main())
