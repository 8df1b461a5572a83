import sys

from app.cli import main
from app.db.process_exit import exit_now

try:
    main()
except SystemExit as exc:  # argparse's and the commands' own exits, with their codes
    if isinstance(exc.code, str):
        print(exc.code, file=sys.stderr)
    exit_now(exc.code if isinstance(exc.code, int) else 1 if exc.code else 0)
exit_now(0)
