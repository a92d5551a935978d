import sys

from irgpt.cli import main

sys.exit(main())
