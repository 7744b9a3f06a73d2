import sys

from microcalcai.cli.main import main

sys.exit(main())
