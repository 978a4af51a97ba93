import sys

from toolformer.cli import main

sys.exit(main())
