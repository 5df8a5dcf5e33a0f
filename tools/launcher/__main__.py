import sys

from tools.launcher.commands import main

sys.exit(main())
