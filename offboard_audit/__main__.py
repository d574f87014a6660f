"""``python -m offboard_audit``."""

from offboard_audit.cli import main

if __name__ == "__main__":
    main()
